"""hvsa: human-in-the-loop video semantic-segmentation auto-annotation.

The package is layered; each layer imports only from the layers before it in this list
(``tests/test_architecture.py`` holds every subpackage to the ``May import`` line of its
docstring):

- ``errors``, ``config``: one-line user errors, optional extras, and the one typed config
  loaded from ``params.yaml`` (shipped beside this file with the best measured defaults);
- ``data``: videos, label files and arrays on disk, generated videos;
- ``method``: the method as functions over arrays (flow, network, samples, uncertainty,
  selectors, ``auto``, fusion, class layers, click model, metrics);
- ``annotation``: who labels (the oracle, human submissions), the click ledger, the audit;
- ``rounds``: one video round by round — state, the round steps, the in-process loop;
- ``campaign`` and ``benchmark``: many videos in a versioned workspace (git, DVC, Prefect,
  MLflow); the click-efficiency benchmark;
- ``app``: the annotation web app;
- ``cli``: the ``hvsa`` command.

Importing hvsa turns off the analytics and telemetry of the tools it drives — Prefect's server
analytics, MLflow's telemetry, DVC's analytics — for this process and every process it starts
(stages, flows, servers inherit the environment): nothing hvsa starts contacts another host. A
variable the user has set is left as it is.
"""

import os

__version__ = "0.1.0"

QUIET = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "DVC_NO_ANALYTICS": "1",
}
for _name, _value in QUIET.items():
    os.environ.setdefault(_name, _value)
