"""Planted bugs and the runner that shows the suite kills them: :mod:`.catalogue` (the bugs),
:mod:`.plant` (the pytest plugin that plants one), :mod:`.runner` (``fp8-verify mutants``)."""
