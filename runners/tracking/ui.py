"""`subnets ui`: the MLflow UI over a project's tracking store, served by this very process.

`mlflow ui` starts a wrapper that starts uvicorn with four worker processes; killing the wrapper (SIGKILL of
`subnets ui`, a closed terminal) leaves the workers serving the port. Here one uvicorn server runs inside
this process (MLflow's own ASGI app, configured the way `mlflow server` configures it through its environment),
so stopping it, however abruptly, leaves nothing behind. It binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import os

from runners.tracking.store import Store

APP = "mlflow.server.fastapi_app:app"


def serve_ui(store: Store, port: int, host: str = "127.0.0.1") -> None:
    """Serve the MLflow UI for `store` until interrupted."""
    import mlflow.server as server
    import uvicorn
    from mlflow.environment_variables import _MLFLOW_SGI_NAME

    os.environ[server.BACKEND_STORE_URI_ENV_VAR] = store.tracking_uri
    os.environ[server.ARTIFACT_ROOT_ENV_VAR] = (store.root / "mlartifacts").as_uri()
    os.environ[_MLFLOW_SGI_NAME.name] = "uvicorn"
    uvicorn.run(APP, host=host, port=port, workers=1, log_level="warning")
