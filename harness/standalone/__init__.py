"""The standalone processes: ``tpe-sim terminal`` (one virtual terminal on a Bumble transport,
with its control API), ``tpe-sim backend`` (the mock backend with an SQLite file) and
``tpe-sim app`` (the virtual mobile app), each on the wall clock. See ``docs/real-app.md``."""
