"""The WSGI app: SageMaker's hosting contract around :func:`costaware.serving.invocation.respond`
(what ``/invocations`` does, without Flask; shared with ``costaware predict``).

    GET  /ping                  200 once this worker holds the model (it loads before serving)
    POST /invocations           rows in, scores + cost-optimal decisions out (codecs.py has formats)
    GET  /execution-parameters  batch transform's defaults for this container

With ``SAGEMAKER_MULTI_MODEL=true`` there is no model at the start: SageMaker loads models
through ``/models`` and invokes each at ``/models/{name}/invoke``, which answers as
``/invocations`` would for that model alone (the same shell; multi_model.py); ``/invocations``
answers the model its ``X-Amzn-SageMaker-Target-Model`` names, as the SageMaker Python SDK's local
mode sends it (an archive below the model directory, unpacked on first use: multi_model.py).

``create_app`` is a factory with no module-level state: each gunicorn worker calls it once at boot,
so each loads its own booster (never shared across a fork) before it accepts a connection. A
request reads only immutable state (the model, the settings); a per-request cost override builds
a new policy object, so a request, good or bad, cannot change what the next one gets.

Every error is JSON ``{"error": "...", "status": N, ...}`` (the table is in docs/serving.md).
With data capture on, a sampled request that was answered is appended, with the answer the client
got, to this worker's capture file (capture.py) before the answer leaves.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from .. import data_capture
from . import codecs, multi_model, policy_override
from .capture import CaptureWriter
from .config import DRAIN_LIMIT, ServerSettings, payload_too_large
from .direct import content_type_header
from .invocation import Call, Invocations, Reply, error_reply, respond_together
from .worker import TARGET_MODEL_HEADER

log = logging.getLogger("costaware.serving")


def _json_response(payload: dict, status: int) -> Response:
    return Response(json.dumps(payload, separators=(",", ":"), allow_nan=False), status=status,
                    mimetype="application/json")


def error_response(status: int, message: str, **details) -> Response:
    return _to_response(error_reply(status, message, **details))


def _to_response(reply: Reply) -> Response:
    """A :class:`~costaware.serving.invocation.Reply` as Flask's response; what the access log
    reports goes into the WSGI environ."""
    request.environ.update(access_fields(reply))
    headers = dict(reply.headers)
    response = Response(reply.body, status=reply.status, mimetype=headers.pop("Content-Type"))
    response.headers.update(headers)
    return response


def access_fields(reply: Reply) -> dict:
    """What the access log reports of a reply (server.JsonLogger reads them from the environ)."""
    if reply.error is not None:
        return {"costaware.error": reply.error}
    return {"costaware.rows": reply.rows, "costaware.timing": reply.timing}


def create_app(model_dir: str | None = None, settings: ServerSettings | None = None,
               health=None, capture: CaptureWriter | None = None,
               registry_dir: str | None = None, unpack_dir: str | None = None) -> Flask:
    """Load the model in ``model_dir`` (default from the environment) and build the app; with
    ``settings.multi_model``, no model: the models SageMaker loads are recorded in
    ``registry_dir``, which every worker shares (multi_model.py), and the archives
    ``/invocations`` names below ``model_dir`` are unpacked into ``unpack_dir``.

    ``health``: a function giving why the server is degraded (``None`` when it is not), which
    ``/ping`` reports (the server's workers share it: worker.WorkerRoster). ``capture``: where
    this worker writes the answered requests (capture.py), ``None`` for no capture.

    Raises :class:`costaware.model.artifact.ModelLoadError` with a one-line reason if the model cannot
    be loaded: the worker then fails to boot and gunicorn stops, rather than serving 500s.
    """
    settings = settings or ServerSettings.from_env()
    app = Flask("costaware.serving")
    app.config.update(DEBUG=False, TESTING=False, PROPAGATE_EXCEPTIONS=False,
                      MAX_CONTENT_LENGTH=None)
    _add_ping(app, health)
    _add_execution_parameters(app, settings)
    invoke = _invocation(settings, capture)

    def load(directory: str) -> Invocations:  # a model as this server serves it
        return Invocations.load(directory, settings.predict_threads, settings.default_accept,
                                settings.response_shape, settings.inference_output)

    if settings.multi_model:
        registry = multi_model.Registry(registry_dir, settings.workers,
                                        multi_model.memory_budget_bytes(settings.models_memory_mb))
        unpack_dir = unpack_dir or tempfile.mkdtemp(prefix="costaware-unpacked-")
        cache = multi_model.ModelCache(registry, settings.models_root, load,
                                       model_dir or settings.model_dir, unpack_dir)
        _add_multi_model(app, cache, invoke, settings)
        app.costaware_heartbeat = cache.sync  # the worker's tick: drop what was unloaded
        app.costaware_direct = DirectRoutes(invoke, cache=cache)
        paths = "/invocations, /models, /ping or /execution-parameters"
    else:
        invocations_of_model = load(model_dir or settings.model_dir)
        read_body = _body_reader(settings)

        @app.post("/invocations")
        def invocations():
            if request.headers.get(TARGET_MODEL_HEADER) is not None:
                return _answer(_target_refused())
            return _answer(invoke([(invocations_of_model, request.headers, read_body, None)])[0])

        app.costaware_direct = DirectRoutes(invoke, single=invocations_of_model)
        paths = "/invocations, /ping or /execution-parameters"
    _add_error_handlers(app, paths)
    return app


class DirectRoutes:
    """The paths worker.py answers without gunicorn's parser or Flask (direct.py says which
    requests): ``/invocations``, or each loaded model's ``/models/{name}/invoke``, through the
    same functions as the Flask routes."""

    def __init__(self, invoke, single: Invocations | None = None,
                 cache: multi_model.ModelCache | None = None):
        self.invoke, self.single, self.cache = invoke, single, cache

    def answers(self, requests: list) -> list[tuple[Reply, dict] | None]:
        """Each ``POST`` request (a direct.PlainRequest) answered: the reply and what the access
        log reports (the fields the Flask shell puts in the environ), or ``None`` for a path
        answered the general way. Those that arrived together are answered together
        (:func:`costaware.serving.invocation.respond_together`)."""
        answers: list[tuple[Reply, dict] | None] = [None] * len(requests)
        calls, asked = [], []
        for i, plain in enumerate(requests):
            fields = {}
            if self.single is not None:
                if plain.path != "/invocations":
                    continue
                if plain.headers.get(TARGET_MODEL_HEADER) is not None:
                    refused = _target_refused()
                    answers[i] = refused, access_fields(refused)
                    continue
                invocations_of_model = self.single
            else:
                name = multi_model.invoked_model(plain.path)
                if name is not None:
                    invocations_of_model = _model_or_refusal(self.cache, name)
                elif plain.path == "/invocations":  # the SDK's local mode
                    name = plain.headers.get(TARGET_MODEL_HEADER)
                    invocations_of_model = _target_or_refusal(self.cache, name)
                else:
                    continue
                fields = {"costaware.model": name} if name is not None else {}
                if isinstance(invocations_of_model, Reply):
                    answers[i] = invocations_of_model, {**access_fields(invocations_of_model),
                                                        **fields}
                    continue
            calls.append((invocations_of_model, plain.headers, lambda body=plain.body: body,
                          fields.get("costaware.model")))
            asked.append((i, fields))
        try:
            replies = self.invoke(calls)
        except Exception:  # what no check foresaw: each again alone, so only its own fails
            replies = [self.alone(call, requests[i].path) for call, (i, _) in zip(calls, asked)]
        for (i, fields), reply in zip(asked, replies):
            answers[i] = reply, {**access_fields(reply), **fields}
        return answers


    def alone(self, call: tuple, path: str) -> Reply:
        try:
            return self.invoke([call])[0]
        except Exception as exc:  # as the Flask app's handler of the unexpected
            return unexpected_reply(exc, "POST", path)


def _add_ping(app: Flask, health) -> None:
    @app.get("/ping")
    def ping():
        # the app exists only once the model loaded (create_app raises otherwise): this worker
        # serves; 200 whatever another worker's trouble, which is said in the body
        problem = health() if health is not None else None
        if problem:
            return _json_response({"status": "degraded", "error": problem}, 200)
        return Response(b'{"status":"ok"}', status=200, mimetype="application/json")


def _add_execution_parameters(app: Flask, settings: ServerSettings) -> None:
    execution_parameters = json.dumps({
        "MaxConcurrentTransforms": settings.workers,
        "BatchStrategy": "MULTI_RECORD",
        "MaxPayloadInMB": settings.max_payload_mb,
    })

    @app.get("/execution-parameters")
    def get_execution_parameters():
        return Response(execution_parameters, status=200, mimetype="application/json")


def _invocation(settings: ServerSettings, capture: CaptureWriter | None):
    """What ``POST /invocations`` does, as ``invoke(calls)`` -> a :class:`Reply` for each call
    ``(model, headers, read_body, model_name)`` (``/invocations`` and each model's
    ``/models/{name}/invoke``, the Flask routes one at a time, the direct way all the requests
    that arrived together; ``model_name`` the name a multi-model endpoint's model was invoked by,
    ``None`` on a single-model endpoint): :func:`costaware.serving.invocation.respond_together`,
    each body read only once its headers pass. With ``capture``, a sampled request that is
    answered (2xx) is captured with the body and ``Content-Type`` the client gets, and on a
    multi-model endpoint the model it invoked (:func:`_captured_model`)."""

    def invoke(calls: list[tuple[Invocations, object, object, str | None]]) -> list[Reply]:
        replies: list[Reply | None] = [None] * len(calls)
        asked, kept = [], {}  # indices of the calls to answer; sampled ones' (time, id, body)
        for i, (_, headers, _, _) in enumerate(calls):
            if capture is not None:
                when = time.time()  # the invocation's time: its record's inferenceTime and hour
                inference_id, problem = _inference_id(headers)
                if problem:
                    replies[i] = error_reply(400, problem)
                    continue
                if capture.sampled():
                    kept[i] = (when, inference_id, [])
            asked.append(i)

        def body_of(i: int):
            """The call's body; a sampled call's is kept for its record as it is read."""
            read_body = calls[i][2]
            if i not in kept:
                return read_body

            def read_and_keep() -> bytes:
                kept[i][2].append(read_body())
                return kept[i][2][0]

            return read_and_keep

        answered = respond_together([_call(calls[i][0], calls[i][1], body_of(i)) for i in asked])
        for i, reply in zip(asked, answered):
            replies[i] = reply
            if i in kept and reply.error is None:
                when, inference_id, received = kept[i]
                capture.write(when, calls[i][1].get("Content-Type"), received[0],
                              content_type_header(reply.headers["Content-Type"]), reply.body,
                              inference_id, _captured_model(calls[i][1], calls[i][3]))
        return replies

    return invoke


def _captured_model(headers, name: str | None) -> str | None:
    """The model a capture record names (its ``eventMetadata.targetModel``): the request's
    ``X-Amzn-SageMaker-Target-Model`` (InvokeEndpoint's ``TargetModel``, which SageMaker sends
    with every invocation of a multi-model endpoint), else the name ``/models/{name}/invoke``
    was called by; ``None`` on a single-model endpoint (``name`` ``None``)."""
    if name is None:
        return None
    raw = headers.get(TARGET_MODEL_HEADER)
    try:
        return name if raw is None else _wsgi_text(raw)
    except UnicodeError:
        return name


def _wsgi_text(raw: str) -> str:
    """A header's UTF-8 text: WSGI hands header bytes over as Latin-1 (UnicodeError if they are
    not UTF-8)."""
    return raw.encode("latin-1").decode("utf-8")


def _call(invocations_of_model: Invocations, headers, body) -> Call:
    """An invocation of a model with the request headers ``/invocations`` reads."""
    return Call(invocations_of_model, body, headers.get("Content-Type"), headers.get("Accept"),
                headers.get(policy_override.HEADER), headers.get("Content-Encoding"))


def _body_reader(settings: ServerSettings):
    """The Flask shell's body: read from the WSGI input once the headers pass."""
    return lambda: _read_body(settings.max_payload_bytes, settings.max_payload_mb)


def _model_or_refusal(cache: multi_model.ModelCache, name: str) -> Invocations | Reply:
    """The loaded model ``/models/{name}/invoke`` invokes, or why not (404, or the cache's
    refusal)."""
    try:
        invocations_of_model = cache.invocations(name)
    except codecs.RequestError as exc:
        return error_reply(exc.status, exc.message, **exc.details)
    return _not_loaded_reply(name) if invocations_of_model is None else invocations_of_model


def _target_or_refusal(cache: multi_model.ModelCache, target: str | None) -> Invocations | Reply:
    """The model a multi-model endpoint's ``/invocations`` invokes (its
    ``X-Amzn-SageMaker-Target-Model``, as the SDK's local mode sends it), or why not."""
    try:
        return cache.target_model(target)
    except codecs.RequestError as exc:
        return error_reply(exc.status, exc.message, **exc.details)


def _target_refused() -> Reply:
    """A single-model endpoint's answer to a target model: SageMaker refuses InvokeEndpoint's
    TargetModel there ("... is not a multi-model endpoint and does not support target model
    header"); answering from the one model would answer for another. The SDK's local mode
    sends it to a server started without SAGEMAKER_MULTI_MODEL, over archives extracted one
    over the other (multi_model.py)."""
    return error_reply(400, f"{TARGET_MODEL_HEADER} names a model of a multi-model endpoint; "
                            "this server serves one model: start it with "
                            "SAGEMAKER_MULTI_MODEL=true to serve the archives below its model "
                            "directory, or send no target model")


def _not_loaded_reply(name: str) -> Reply:
    return error_reply(404, f"model {name!r} is not loaded")


def _answer(reply: Reply) -> Response:
    """``reply`` as the response; a refused request's body is drained."""
    response = _to_response(reply)
    if reply.error is not None:
        _drain(request.content_length, response)
    return response


def _refused(exc: codecs.RequestError) -> Response:
    return _answer(error_reply(exc.status, exc.message, **exc.details))


def _add_multi_model(app: Flask, cache: multi_model.ModelCache, invoke,
                     settings: ServerSettings) -> None:
    """SageMaker's multi-model contract (multi_model.py has the why); every refusal is the JSON
    error every other refusal is."""

    @app.post("/models")
    def load_model():
        try:
            body = _read_body(settings.max_payload_bytes, settings.max_payload_mb)
            try:
                wanted = json.loads(body)
            except (ValueError, UnicodeError) as exc:
                raise codecs.RequestError(400, f"the body is not JSON: {exc}") from None
            entry = cache.load(wanted)
        except codecs.RequestError as exc:
            return _refused(exc)
        request.environ["costaware.model"] = entry.model_name
        return _json_response({**entry.listed(), "status": "loaded"}, 200)

    @app.get("/models")
    def list_models():
        try:
            return _json_response(multi_model.page(cache.sync(), request.args.get("max_results"),
                                                   request.args.get("next_page_token")), 200)
        except codecs.RequestError as exc:
            return _refused(exc)

    def not_loaded(name: str) -> Response:
        return _answer(_not_loaded_reply(name))

    @app.get("/models/<name>")
    def get_model(name: str):
        entry = cache.sync().get(name)
        return not_loaded(name) if entry is None else _json_response(entry.listed(), 200)

    @app.delete("/models/<name>")
    def unload_model(name: str):
        request.environ["costaware.model"] = name
        if not cache.unload(name):
            return not_loaded(name)
        return _json_response({"modelName": name, "status": "unloaded"}, 200)

    read_body = _body_reader(settings)

    @app.post("/models/<name>/invoke")
    def invoke_model(name: str):
        request.environ["costaware.model"] = name
        return _answer_with(_model_or_refusal(cache, name), name)

    @app.post("/invocations")
    def invoke_target():
        target = request.headers.get(TARGET_MODEL_HEADER)
        if target is not None:
            try:
                target = _wsgi_text(target)
            except UnicodeError:
                return _answer(error_reply(400, f"{TARGET_MODEL_HEADER} is not valid UTF-8"))
            request.environ["costaware.model"] = target
        return _answer_with(_target_or_refusal(cache, target), target)

    def _answer_with(invocations_of_model: Invocations | Reply, name: str | None) -> Response:
        if isinstance(invocations_of_model, Reply):
            return _answer(invocations_of_model)
        return _answer(invoke([(invocations_of_model, request.headers, read_body, name)])[0])


def _inference_id(headers) -> tuple[str | None, str | None]:
    """The caller's ``X-Amzn-SageMaker-Inference-Id`` (``None`` when absent), or why it is one
    InvokeEndpoint would refuse (then SageMaker answers a 400 before the container sees it)."""
    raw = headers.get(data_capture.INFERENCE_ID_HEADER)
    if raw is None:
        return None, None
    try:
        value = _wsgi_text(raw)
    except UnicodeError:
        return None, f"{data_capture.INFERENCE_ID_HEADER} is not valid UTF-8"
    return value, data_capture.check_inference_id(value)


def _add_error_handlers(app: Flask, paths: str) -> None:
    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        message = exc.description or exc.name
        if exc.code == 405:
            message = f"{request.method} is not allowed on {request.path}"
        elif exc.code == 404:
            message = f"no such path {request.path}; use {paths}"
        return error_response(exc.code or 500, message)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        return _to_response(unexpected_reply(exc, request.method, request.path))


def unexpected_reply(exc: Exception, method: str, path: str) -> Reply:
    """A 500 for what no check foresaw, its traceback in the server log."""
    log.exception("unexpected error on %s %s", method, path, exc_info=exc)
    return error_reply(500, f"internal error: {type(exc).__name__}; the request was not "
                            "processed (details in the server log)")


def _read_body(limit: int, limit_mb: int) -> bytes:
    length = request.content_length
    if length is not None and length > limit:
        raise codecs.RequestError(413, payload_too_large(limit_mb, length), limit_bytes=limit)
    stream = request.environ["wsgi.input"]  # gunicorn's reader: read(n) returns n bytes or to EOF
    if length is not None:
        body = stream.read(length)
        if len(body) < length:
            raise codecs.RequestError(400, f"the body ended after {len(body)} of its "
                                           f"{length} bytes (Content-Length)")
        return body
    chunks, size = [], 0  # chunked transfer: read up to the limit and one byte more
    while size <= limit:
        chunk = stream.read(min(1 << 22, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise codecs.RequestError(413, payload_too_large(limit_mb), limit_bytes=limit)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _drain(length: int | None, response: Response) -> None:
    """Read and drop what is left of a refused body (up to DRAIN_LIMIT bytes), so the client gets
    the error rather than a reset in the middle of sending, and a kept-alive connection stays
    usable. Bigger bodies: the connection is closed instead."""
    if length is not None and length > DRAIN_LIMIT:
        response.headers["Connection"] = "close"
        return
    stream = request.environ["wsgi.input"]
    dropped = 0
    try:
        while dropped <= DRAIN_LIMIT:
            chunk = stream.read(1 << 20)
            if not chunk:
                return
            dropped += len(chunk)
    except (OSError, ValueError):  # pragma: no cover - the client went away
        pass
    response.headers["Connection"] = "close"
