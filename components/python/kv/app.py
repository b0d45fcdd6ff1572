"""A Python service on Berth's capabilities, built with componentize-py.

It uses the raw bindings componentize-py generates from the standard WIT in
wit/ (wasi:keyvalue, wasi:config, wasi:logging), no Berth SDK: a component
from another toolchain links against Berth's world unchanged.

GET any path: counts the visit in the `default` bucket and answers with the
`greeting` config value and the count.
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


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        bucket = wasi_keyvalue_store.open("default")
        visits = atomics.increment(bucket, "visits", 1)
        greeting = wasi_config_store.get("greeting") or "Hello"
        logging.log(logging.Level.INFO, "python-kv", f"visit {visits}")
        headers = Fields.from_list([("content-type", b"text/plain")])
        response = OutgoingResponse(headers)
        body = response.body()
        ResponseOutparam.set(response_out, Ok(response))
        stream = body.write()
        stream.blocking_write_and_flush(f"{greeting}, visit {visits}\n".encode())
        stream.__exit__(None, None, None)
        OutgoingBody.finish(body, None)
