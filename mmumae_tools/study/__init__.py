"""A study: a grid of pre-train -> evaluate experiments on one image set
(:mod:`.plan`), each run in its own process (:mod:`.worker`, frozen-feature
evaluations in :mod:`.features`), resumable, reported as tables and a plot
(:mod:`.report`); :func:`.runner.run_study` is the loop."""
