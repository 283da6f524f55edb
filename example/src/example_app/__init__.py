"""hotswap's self-deploying example app.

- :mod:`example_app.main`: the Starlette app (the page, its API, the live event stream);
- :mod:`example_app.deployer`: the ``deployer`` service, which lives under the supervisor,
  rebuilds the app with a new label and swaps to it (blue-green or hot);
- :mod:`example_app.builder`: stamps a copy of the project and runs ``hotswap build``;
- :mod:`example_app._build`: the build-time constants, written anew for every build.
"""
