"""Build-time constants. The deployer rewrites this module in a copy of the project for
every build (see example_app.builder); this checked-in version is the source default."""

LABEL = "Hello from hotswap"
BUILD = 0
VERSION = "1.0.0"
