"""The 1.2.x routes the shipped front end calls (docs/compatibility.md#routes, #inpaint-form), answered
as upstream answers them.

Work is never done here: a route turns the multipart request into a ``TaskRequest``, checks it with
``pipeline.validate_task`` (so bad input is a 400 before anything is queued) and hands it to the
executor, local or distributed. Replies keep upstream's literal texts (``True``, ``Same model``, ...).
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request, send_from_directory

from .. import frontend
from ..pipeline import validate_task
from ..tasks import TaskKind, TaskRequest
from .errors import text_response
from .media import file_manager_enabled
from .replies import image_response
from .state import ServerState, state

blueprint = Blueprint("classic", __name__)

INPAINT_FILES = ("image", "mask", "paintByExampleImage")
"""The uploads ``/inpaint`` reads; other parts are ignored, as upstream ignores them."""
CONTROLNET_BASES = ("sd1.5", "anything4", "realisticVision1.4")
"""Models for which ``--sd-controlnet`` turns ControlNet mode on (``isControlNet``)."""


# ------------------------------------------------------------------ front end
@blueprint.get("/")
def index() -> Response:
    root = frontend.build_dir()
    if root is None:
        return send_from_directory(frontend.FALLBACK_DIR, "index.html", max_age=0)
    return send_from_directory(root, "index.html")


@blueprint.get("/static/<path:filename>")
def static_files(filename: str) -> Response:
    root = frontend.build_dir() or frontend.FALLBACK_DIR
    return send_from_directory(root / "static", filename)


@blueprint.get("/flaskwebgui-keep-server-alive")
def keep_alive() -> Response | str:
    """Exists only in ``--gui`` mode, where the front end polls it."""
    if not state().config.gui:
        return text_response("Not Found", 404)
    return "ok"


# ------------------------------------------------------------------ work
def _task_request(kind: TaskKind, name: str, st: ServerState) -> TaskRequest:
    """The request as received: raw form strings and the file bytes the task can use, plus who sent it.

    ``/inpaint`` keeps only the files it reads; a plugin may read any named upload. A part without a
    field name is never a file anyone reads, and could not be queued in distributed mode (blob names
    must be non-empty), so it is dropped in both modes alike.
    """
    form = request.form.to_dict(flat=True)
    files = {
        key: storage.read()
        for key, storage in request.files.items()
        if key and (kind != "inpaint" or key in INPAINT_FILES)
    }
    return TaskRequest(kind=kind, name=name, form=form, files=files, submitter=st.notifier.classic_submitter())


@blueprint.post("/inpaint")
def inpaint() -> Response:
    st = state()
    task = _task_request("inpaint", st.executor.current_model(), st)
    validate_task(task, st.config, st.image_plugins)
    output = st.executor.run(task)
    st.notifier.finish(task.submitter)
    return image_response(output)


@blueprint.post("/run_plugin")
def run_plugin() -> Response:
    st = state()
    task = _task_request("plugin", request.form.get("name", ""), st)
    validate_task(task, st.config, st.image_plugins)  # unknown or disabled name -> 404 "Plugin not found"
    return image_response(st.executor.run(task))


# ------------------------------------------------------------------ settings
@blueprint.get("/server_config")
def server_config() -> Response:
    config = state().config
    return jsonify(
        plugins=state().image_plugins.names(),
        enableFileManager=file_manager_enabled(config),
        isEnableAutoSaving=config.output_dir is not None,
        isDisableModelSwitchState=config.disable_model_switch,
        controlNetMethod=config.sd_controlnet_method,
        isControlNet=config.sd_controlnet and config.model in CONTROLNET_BASES,
    )


@blueprint.get("/model")
def current_model() -> str:
    return state().executor.current_model()


@blueprint.post("/model")
def switch_model() -> Response | str:
    st = state()
    if st.config.disable_model_switch:
        return text_response("Switch model is disabled", 400)
    name = request.form.get("name")
    if name is not None and name == st.executor.current_model():
        return "Same model"
    if name is None or name not in st.models:
        return text_response(f"{name} not implemented", 403)
    return f"ok, switch to {name}" if st.executor.switch_model(name) else "Same model"


@blueprint.get("/model_downloaded/<name>")
def model_downloaded(name: str) -> Response | str:
    st = state()
    if name not in st.models:
        return text_response(f"Model not found: {name}", 404)
    return str(bool(st.models.get(name).is_downloaded(st.config)))


@blueprint.get("/is_desktop")
def is_desktop() -> str:
    return str(bool(state().config.gui))
