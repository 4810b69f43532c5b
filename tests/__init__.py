"""The properties and the suite's self-tests. Installed from a wheel they are the package
``fp8_verify.properties``, which ``fp8-verify check`` runs when there is no checkout."""
