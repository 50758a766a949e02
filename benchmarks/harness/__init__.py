"""What every benchmark script under ``benchmarks/`` shares, one module per job.

* :mod:`harness.paths`: the checkout and the committed results folder;
* :mod:`harness.memory`: resident-set and peak-memory probes;
* :mod:`harness.load`: CPU time other processes take while a benchmark runs;
* :mod:`harness.timing`: timed steps and the two schedulers (isolated runs, paired rounds);
* :mod:`harness.subprocess_runs`: one measurement in a fresh interpreter, its JSON result read back;
* :mod:`harness.environment`: the machine a torch benchmark ran on;
* :mod:`harness.output`: the timestamp and the JSON file of a record.

The scripts run with ``benchmarks/`` on ``sys.path`` (``python benchmarks/<script>.py`` puts it there; the tests
insert it), so they import ``harness.<module>``.
"""
