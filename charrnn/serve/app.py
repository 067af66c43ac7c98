"""The ASGI app of `charrnn serve` (Starlette): OpenAI's /v1/completions (JSON, or
server-sent events with "stream": true), /v1/models, /health and the page at /.

Every answer that is not a success is OpenAI's error object. The generation itself runs
in a worker thread (generation.py); the event loop only moves its chunks to the client,
and a client that hangs up cancels it."""
import asyncio
import dataclasses
import hmac
import ipaddress
import json
import time
import uuid

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from charrnn.serve import page
from charrnn.serve.generation import Generations
from charrnn.serve.request import ApiError, Limits, parse


def _loopback(name):
    """True for localhost and loopback addresses (127.0.0.0/8, [::1])."""
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


def create_app(model, name, limits=Limits(), api_key=None, loopback_only=True):
    """The app serving `model` (an api.Model) as `name`. api_key: when given, /v1/*
    needs `Authorization: Bearer KEY` (compared in constant time). loopback_only: answer
    only requests whose Host is a loopback name (a web page on another site cannot
    reach the server by rebinding its DNS name to 127.0.0.1). The app's state holds
    `generations` (generation.Generations): set its `closing` to stop them all."""
    gens = Generations(model, limits.concurrent)
    started = int(time.time())
    vocab = model.checkpoint.vocab

    def authorize(request):
        if api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
                token.strip().encode(), api_key.encode()):
            raise ApiError(401, "incorrect API key: send it as 'Authorization: Bearer KEY'",
                           None, code="invalid_api_key")

    async def completions(request):
        authorize(request)
        req = parse(await _body(request, limits.body_bytes), limits, vocab)
        if req.seed is None:        # drawn here, so every prompt uses the one reported
            import numpy as np
            req = dataclasses.replace(req, seed=int(np.random.SeedSequence().entropy))
        loop, queue = asyncio.get_running_loop(), asyncio.Queue()

        def emit(event):            # from the worker thread
            try:
                loop.call_soon_threadsafe(queue.put_nowait, event)
            except RuntimeError:    # the loop is closed: the server is gone
                pass
        job = gens.start(req, emit)
        head = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion",
                "created": int(time.time()), "model": name, "seed": req.seed}
        prompt_chars = sum(map(len, req.prompts))
        usage = lambda made: {"prompt_tokens": prompt_chars, "completion_tokens": made,  # noqa: E731
                              "total_tokens": prompt_chars + made}
        if req.stream:
            return StreamingResponse(_events(queue, job, req, head, usage),
                                     media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache",
                                              "X-Accel-Buffering": "no"})
        collect = asyncio.ensure_future(_collect(queue, req))
        gone = asyncio.ensure_future(_disconnected(request))
        await asyncio.wait({collect, gone}, return_when=asyncio.FIRST_COMPLETED)
        if not collect.done():      # the client hung up: stop its generation
            job.cancel.set()
            collect.cancel()
            return Response(status_code=499)
        gone.cancel()
        texts, reasons, made = collect.result()
        choices = [{"text": texts[k], "index": k, "logprobs": None, "finish_reason": reasons[k]}
                   for k in range(len(texts))]
        return JSONResponse({**head, "choices": choices, "usage": usage(made)})

    async def models(request):
        authorize(request)
        return JSONResponse({"object": "list", "data": [
            {"id": name, "object": "model", "created": started, "owned_by": "charrnn"}]})

    async def health(request):
        return JSONResponse({"status": "ok", "model": name, **gens.counts()})

    async def home(request):
        html, csp = page.render(name, api_key is not None, limits.max_tokens)
        return HTMLResponse(html, headers={"Content-Security-Policy": csp,
                                           "X-Content-Type-Options": "nosniff",
                                           "Referrer-Policy": "no-referrer"})

    async def api_error(request, e):
        headers = {"WWW-Authenticate": "Bearer"} if e.status == 401 else None
        return JSONResponse(e.body(), status_code=e.status, headers=headers)

    async def http_error(request, e):
        kind = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code)
        return JSONResponse(ApiError(e.status_code, f"{request.method} {request.url.path}: "
                                     f"{e.detail}", None, code=kind).body(),
                            status_code=e.status_code)

    app = Starlette(routes=[
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/", home, methods=["GET"]),
    ], exception_handlers={ApiError: api_error, HTTPException: http_error})
    app.state.generations = gens
    return LoopbackHost(app) if loopback_only else app


async def warm(app, api_key=None):
    """One streamed completion through the whole app, in-process: what the first request
    would otherwise import and set up on its way (Starlette's routing and responses,
    anyio, a generation thread) is ready before the server says it is. Not counted."""
    body = json.dumps({"prompt": "", "max_tokens": 4, "stream": True, "seed": 0}).encode()
    headers = [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    if api_key is not None:
        headers.append((b"authorization", b"Bearer " + api_key.encode()))
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
             "http_version": "1.1", "method": "POST", "scheme": "http", "path": "/v1/completions",
             "raw_path": b"/v1/completions", "query_string": b"", "root_path": "",
             "headers": headers, "client": ("127.0.0.1", 0), "server": ("127.0.0.1", 0)}
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    ended = asyncio.Event()

    async def receive():
        if messages:
            return messages.pop()
        await ended.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        if message["type"] == "http.response.body" and not message.get("more_body"):
            ended.set()
    await app(scope, receive, send)
    gens = app.state.generations
    with gens.lock:
        gens.finished = gens.cancelled = 0


async def _body(request, limit):
    """The request body, refused (413) as soon as it is longer than `limit` bytes."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise ApiError(413, f"the request body is larger than {limit} bytes", None,
                       code="request_too_large")
    parts, size = [], 0
    async for part in request.stream():
        size += len(part)
        if size > limit:
            raise ApiError(413, f"the request body is larger than {limit} bytes", None,
                           code="request_too_large")
        parts.append(part)
    return b"".join(parts)


async def _disconnected(request):
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _collect(queue, req):
    """Every choice's text and finish reason, and the characters made."""
    k = req.n * len(req.prompts)
    texts, reasons = [[] for _ in range(k)], [None] * k
    while True:
        event = await queue.get()
        if event[0] == "text":
            texts[event[1]].append(event[2])
        elif event[0] == "end":
            reasons[event[1]] = event[2]
        elif event[0] == "done":
            echo = [req.prompts[i // req.n] if req.echo else "" for i in range(k)]
            return [e + "".join(t) for e, t in zip(echo, texts)], reasons, event[1]
        elif event[0] == "error":
            raise ApiError(500, f"the generation failed: {event[1]}", None, type="server_error")
        else:                       # cancelled: the server is closing
            raise ApiError(503, "the server is shutting down", None, type="server_error")


def _sse(obj):
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


async def _events(queue, job, req, head, usage):
    """Server-sent events: one `data:` chunk per piece of text as it is made, a chunk with
    each choice's finish_reason, the usage if asked for, then `data: [DONE]`. Leaving
    (the client hung up: Starlette cancels the response) cancels the generation."""
    echoed = set()

    def chunk(index, text, reason):
        if req.echo and index not in echoed:
            echoed.add(index)
            text = req.prompts[index // req.n] + text
        return _sse({**head, "choices": [{"text": text, "index": index, "logprobs": None,
                                          "finish_reason": reason}]})
    try:
        while True:
            event = await queue.get()
            if event[0] == "text":
                yield chunk(event[1], event[2], None)
            elif event[0] == "end":
                yield chunk(event[1], "", event[2])
            elif event[0] == "done":
                if req.include_usage:
                    yield _sse({**head, "choices": [], "usage": usage(event[1])})
                yield "data: [DONE]\n\n"
                return
            elif event[0] == "error":
                yield _sse(ApiError(500, f"the generation failed: {event[1]}", None,
                                    type="server_error").body())
                return
            else:                   # cancelled: the server is closing
                return
    finally:
        job.cancel.set()


class LoopbackHost:
    """ASGI middleware: refuse (400) a request whose Host header is not a loopback name,
    so that a page from another site whose DNS name now points at 127.0.0.1 gets
    nothing (DNS rebinding)."""

    def __init__(self, app):
        self.app = app
        self.state = app.state

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1").lower()
            name = host[:host.find("]") + 1] if host.startswith("[") else host.split(":")[0]
            if not _loopback(name):
                response = JSONResponse(ApiError(
                    400, f"Host {host!r} is not a loopback name: this server answers only "
                         f"localhost (start it with --host to serve others)", None,
                    code="bad_host").body(), status_code=400)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
