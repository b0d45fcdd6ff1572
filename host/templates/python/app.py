"""{{name}}: a Berth service in Python, built with componentize-py against
Berth's WIT (in wit/): wasi:http, wasi:keyvalue, wasi:config, wasi:logging.

- GET /: greets with the `greeting` config value and counts the visit in
  key-value.
- any other path below the service's route: 404.
"""

from componentize_py_types import Ok
from wit_world import exports
from wit_world.imports import atomics, logging, wasi_config_store, wasi_keyvalue_store
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)


def respond(response_out: ResponseOutparam, status: int, text: str) -> None:
    headers = Fields.from_list([("content-type", b"text/plain; charset=utf-8")])
    response = OutgoingResponse(headers)
    response.set_status_code(status)
    body = response.body()
    ResponseOutparam.set(response_out, Ok(response))
    stream = body.write()
    stream.blocking_write_and_flush(text.encode())
    stream.__exit__(None, None, None)
    OutgoingBody.finish(body, None)


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        # The path below the service's route (`/` at the route itself).
        below = request.headers().get("x-berth-path-info")
        path = below[0].decode() if below else (request.path_with_query() or "/")
        if path.split("?")[0] not in ("", "/"):
            respond(response_out, 404, "not found\n")
            return
        bucket = wasi_keyvalue_store.open("default")
        visits = atomics.increment(bucket, "visits", 1)
        greeting = wasi_config_store.get("greeting") or "Hello"
        logging.log(logging.Level.INFO, "{{name}}", f"visit {visits}")
        respond(response_out, 200, f"{greeting} from {{name}}! Visit {visits}.\n")
