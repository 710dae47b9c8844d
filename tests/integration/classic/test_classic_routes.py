"""Every non-inpaint classic route of docs/compatibility.md#routes against a real server subprocess."""

from __future__ import annotations

import requests

from .media_helpers import assert_plain_text_error, image_bytes

SERVER_CONFIG_KEYS = {
    "plugins",
    "enableFileManager",
    "isEnableAutoSaving",
    "isDisableModelSwitchState",
    "controlNetMethod",
    "isControlNet",
}


def get(server, path: str, **kwargs) -> requests.Response:
    return requests.get(server.url + path, timeout=30, **kwargs)


def post(server, path: str, **kwargs) -> requests.Response:
    return requests.post(server.url + path, timeout=30, **kwargs)


def test_server_config_exact_keys_and_defaults(classic_server):
    response = get(classic_server, "/server_config")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == SERVER_CONFIG_KEYS
    assert body == {
        "plugins": [],
        "enableFileManager": False,
        "isEnableAutoSaving": False,
        "isDisableModelSwitchState": False,
        "controlNetMethod": "control_v11p_sd15_canny",
        "isControlNet": False,
    }
    assert list(body) == sorted(body), "keys are sorted, as Flask 2.2 sent them"


def test_model_routes(classic_server):
    assert get(classic_server, "/model").text == "cv2"
    assert post(classic_server, "/model", data={"name": "cv2"}).text == "Same model"
    assert post(classic_server, "/model", files={"name": (None, "cv2")}).text == "Same model"  # multipart too
    assert_plain_text_error(post(classic_server, "/model", data={"name": "nope"}), 403, "nope not implemented")
    assert_plain_text_error(post(classic_server, "/model", data={}), 403, "None not implemented")


def test_known_but_unsupported_model_is_a_clear_4xx_and_keeps_the_model(classic_server):
    response = post(classic_server, "/model", data={"name": "sd1.5"})
    assert 400 <= response.status_code < 500, response.text
    assert "sd1.5" in response.text and "<html" not in response.text.lower()
    assert get(classic_server, "/model").text == "cv2"


def test_model_downloaded(classic_server):
    assert get(classic_server, "/model_downloaded/cv2").text == "True"
    assert get(classic_server, "/model_downloaded/sd1.5").text in {"True", "False"}
    assert_plain_text_error(get(classic_server, "/model_downloaded/nope"), 404, "nope")


def test_is_desktop_and_input_image_defaults(classic_server):
    assert get(classic_server, "/is_desktop").text == "False"
    assert get(classic_server, "/inputimage").text == "No Input Image"
    assert get(classic_server, "/flaskwebgui-keep-server-alive").status_code == 404


def test_run_plugin_unknown_or_disabled_is_404(classic_server):
    files = {"image": ("i.png", image_bytes(), "image/png")}
    assert_plain_text_error(
        post(classic_server, "/run_plugin", data={"name": "Nope"}, files=files), 404, "Plugin not found"
    )
    assert_plain_text_error(
        post(classic_server, "/run_plugin", data={"name": "MakeGIF"}, files=files), 404, "Plugin not found"
    )


def test_save_image_without_output_dir_is_400(classic_server):
    response = post(
        classic_server,
        "/save_image",
        data={"filename": "x.png"},
        files={"image": ("x.png", image_bytes(), "image/png")},
    )
    assert_plain_text_error(response, 400, "--output-dir is None")


def test_unknown_route_and_wrong_method_are_plain_text(classic_server):
    assert_plain_text_error(get(classic_server, "/no/such/route"), 404)
    wrong = get(classic_server, "/inpaint")
    assert_plain_text_error(wrong, 405)
    assert "POST" in wrong.headers["Allow"]


def test_cors_echoes_origin_and_exposes_content_disposition(classic_server):
    response = get(classic_server, "/model", headers={"Origin": "http://example.test"})
    assert response.headers["Access-Control-Allow-Origin"] == "http://example.test"
    assert "Content-Disposition" in response.headers["Access-Control-Expose-Headers"]
    preflight = requests.options(
        classic_server.url + "/inpaint",
        timeout=30,
        headers={"Origin": "http://example.test", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 200
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]


def test_fallback_page_without_frontend_build(shared_servers, tmp_path_factory):
    empty = tmp_path_factory.mktemp("no-build")
    server = shared_servers.get(env={"LAMA_CLEANER_BUILD_DIR": str(empty)})
    page = get(server, "/")
    assert page.status_code == 200
    assert "lama-cleaner install-frontend" in page.text
    assert get(server, "/static/js/main.js").status_code == 404


def test_frontend_build_dir_is_served(shared_servers, tmp_path_factory):
    build = tmp_path_factory.mktemp("build")
    (build / "static" / "js").mkdir(parents=True)
    (build / "index.html").write_text("<!doctype html><title>fake build</title>")
    (build / "static" / "js" / "main.abc.js").write_text("console.log('hi')")
    server = shared_servers.get(env={"LAMA_CLEANER_BUILD_DIR": str(build)})
    assert "fake build" in get(server, "/").text
    script = get(server, "/static/js/main.abc.js")
    assert script.status_code == 200 and script.text == "console.log('hi')"
    assert get(server, "/static/../index.html").status_code == 404


def test_disable_model_switch(shared_servers):
    server = shared_servers.get("--disable-model-switch")
    assert get(server, "/server_config").json()["isDisableModelSwitchState"] is True
    assert_plain_text_error(post(server, "/model", data={"name": "lama"}), 400, "Switch model is disabled")
    assert get(server, "/model").text == "cv2"


def test_gui_flag_only_changes_desktop_answers(shared_servers):
    server = shared_servers.get("--gui")
    assert get(server, "/is_desktop").text == "True"
    assert get(server, "/flaskwebgui-keep-server-alive").text == "ok"


def test_make_gif_plugin_when_enabled(shared_servers):
    server = shared_servers.get("--enable-gif")
    assert get(server, "/server_config").json()["plugins"] == ["MakeGIF"]
    files = {
        "image": ("a.png", image_bytes(64, 48, seed=1), "image/png"),
        "clean_img": ("b.png", image_bytes(64, 48, seed=2), "image/png"),
    }
    response = post(server, "/run_plugin", data={"name": "MakeGIF", "filename": "a.gif"}, files=files)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "image/gif"
    assert response.headers["Content-Disposition"].startswith("attachment")
    assert response.content[:6] in (b"GIF87a", b"GIF89a")
    missing = post(
        server, "/run_plugin", data={"name": "MakeGIF", "filename": "a.gif"}, files={"image": files["image"]}
    )
    assert_plain_text_error(missing, 400, "clean_img")
