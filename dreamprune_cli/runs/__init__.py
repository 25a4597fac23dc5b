"""One module per subcommand: typed settings and a progress sink in, a typed result and its
run folder out. The command line only declares options, resolves settings, calls a run here
and renders its result; Python users and ``bench/`` call these modules directly."""
