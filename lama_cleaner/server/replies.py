"""The one way an encoded task result leaves the web server.

``/inpaint``, ``/run_plugin`` and ``GET /api/v1/tasks/{id}/result`` all answer with the bytes a
``TaskOutput`` carries; they must send them identically (same caching, same headers) so a client sees
no difference between the classic routes and the task API.
"""

from __future__ import annotations

import io

from flask import Response, send_file

from ..tasks import TaskOutput


def image_response(output: TaskOutput) -> Response:
    """Like upstream's ``send_file(BytesIO)``: no-cache, Range support, no ETag, plus the output's headers."""
    response = send_file(io.BytesIO(output.body), mimetype=output.mimetype, etag=False, max_age=None)
    for key, value in output.headers.items():
        response.headers[key] = value
    response.headers["Cache-Control"] = "no-cache"
    return response
