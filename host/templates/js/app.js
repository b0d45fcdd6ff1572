// {{name}}: a Berth service in JavaScript, built with componentize-js
// against Berth's WIT (in wit/): wasi:http's incoming handler, and
// wasi:keyvalue, wasi:config and wasi:logging.
//
// - GET /: greets with the `greeting` config value and counts the visit in
//   key-value.
// - any other path below the service's route: 404.

import {
  Fields,
  OutgoingBody,
  OutgoingResponse,
  ResponseOutparam,
} from "wasi:http/types@0.2.12";
import { open } from "wasi:keyvalue/store@0.2.0-draft2";
import { increment } from "wasi:keyvalue/atomics@0.2.0-draft2";
import { get } from "wasi:config/store@0.2.0-rc.1";
import { log } from "wasi:logging/logging@0.1.0-draft";

const encoder = new TextEncoder();

function respond(responseOut, status, text) {
  const headers = Fields.fromList([
    ["content-type", encoder.encode("text/plain; charset=utf-8")],
  ]);
  const response = new OutgoingResponse(headers);
  response.setStatusCode(status);
  const body = response.body();
  ResponseOutparam.set(responseOut, { tag: "ok", val: response });
  const stream = body.write();
  stream.blockingWriteAndFlush(encoder.encode(text));
  stream[Symbol.dispose]();
  OutgoingBody.finish(body, undefined);
}

export const incomingHandler = {
  handle(request, responseOut) {
    // The path below the service's route (`/` at the route itself).
    const below = request.headers().get("x-berth-path-info");
    const path = below.length > 0
      ? new TextDecoder().decode(below[0])
      : (request.pathWithQuery() ?? "/");
    if (!["", "/"].includes(path.split("?")[0])) {
      respond(responseOut, 404, "not found\n");
      return;
    }
    const visits = increment(open("default"), "visits", 1n);
    const greeting = get("greeting") ?? "Hello";
    log("info", "{{name}}", `visit ${visits}`);
    respond(responseOut, 200, `${greeting} from {{name}}! Visit ${visits}.\n`);
  },
};
