pytest_plugins = ["fp8_verify.plugin"]
