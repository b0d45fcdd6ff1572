"""A wasi:http service in Python, built with componentize-py by `make components`.

It uses no Berth SDK: the raw wasi:http bindings componentize-py generates
from the WIT in wit/. It shows that a component from another toolchain runs
unchanged, and that its stdout reaches the host's log.
"""

from componentize_py_types import Ok
from wit_world import exports
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        path = request.path_with_query() or "/"
        print(f"python guest handling {path}")
        headers = Fields.from_list([("content-type", b"text/plain")])
        response = OutgoingResponse(headers)
        body = response.body()
        ResponseOutparam.set(response_out, Ok(response))
        stream = body.write()
        stream.blocking_write_and_flush(f"Hello from Python at {path}\n".encode())
        stream.__exit__(None, None, None)
        OutgoingBody.finish(body, None)
