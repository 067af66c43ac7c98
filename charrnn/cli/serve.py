"""charrnn serve: a model behind the OpenAI-compatible completions API (charrnn.serve)."""
import os
import sys

import click

from charrnn.cli.common import CONTEXT, err
from charrnn.errors import DataError


@click.command(context_settings=CONTEXT)
@click.argument("checkpoint", metavar="CHECKPOINT_OR_RUN", type=click.Path())
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but a loopback address makes the model "
                   "reachable from other machines (a warning says so).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port to listen on (0: any free port, named in the start-up line).")
@click.option("--api-key", envvar="CHARRNN_API_KEY", default=None,
              help="Require 'Authorization: Bearer KEY' on /v1/* (or set CHARRNN_API_KEY, which "
                   "other users cannot read in the process list).")
@click.option("--name", default=None,
              help="The model's name in /v1/models and responses [default: the run folder's].")
@click.option("--max-tokens", type=click.IntRange(1), default=4096, show_default=True,
              help="Most characters a request may ask for, per choice.")
@click.option("--max-n", type=click.IntRange(1), default=16, show_default=True,
              help="Most choices per request (prompts x n).")
@click.option("--max-prompt", type=click.IntRange(0), default=16_384, show_default=True,
              help="Most prompt characters per request.")
@click.option("--max-body", type=click.IntRange(1), default=1 << 20, show_default=True,
              help="Largest request body, in bytes.")
@click.option("--max-concurrent", type=click.IntRange(1), default=16, show_default=True,
              help="Most generations running at once; more requests get 429.")
def serve(checkpoint, host, port, api_key, name, max_tokens, max_n, max_prompt, max_body,
          max_concurrent):
    """Serve a model over HTTP: OpenAI's completions API and a page to try it.

    POST /v1/completions (streamed as server-sent events with "stream": true),
    GET /v1/models, GET /health, and a page at / (open it in a browser). The
    kernels are compiled before the start-up line, so the first request is fast.
    Listens on 127.0.0.1 only unless --host says otherwise. Ctrl-C stops it
    (status 130; SIGTERM 143). Needs the serve extra: pip install "charrnn[serve]".

    \b
    Examples:
      charrnn serve checkpoints/shakespeare-lstm-20261123-101500
      charrnn serve model.npz --port 0 --api-key "$(openssl rand -hex 16)"
      curl -s localhost:8000/v1/completions -H 'Content-Type: application/json' \\
           -d '{"prompt": "ROMEO:", "max_tokens": 200, "temperature": 0.8}'
    """
    try:
        import starlette  # noqa: F401
        import uvicorn
    except ImportError:
        raise DataError('charrnn serve needs the serve extra: pip install "charrnn[serve]"') \
            from None
    import signal

    from charrnn.api import load
    from charrnn.runs import checkpoint_path
    from charrnn.serve.app import _loopback, create_app, warm
    from charrnn.serve.request import Limits
    path = checkpoint_path(checkpoint)
    model = load(path)
    name = name or _run_name(checkpoint, path)
    model.generate(model.vocab[:2], length=64, seed=0)     # compile (or load) every kernel now
    limits = Limits(body_bytes=max_body, prompt_chars=max_prompt, max_tokens=max_tokens,
                    n=max_n, concurrent=max_concurrent)
    loopback = _loopback(host.lower())
    app = create_app(model, name, limits, api_key=api_key, loopback_only=loopback)
    sock = _listen(host, port)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{sock.getsockname()[1]}/"
    if not loopback:
        click.echo(f"warning: listening on {host}: the model is reachable from other machines"
                   + ("" if api_key else "; anyone who reaches it can use it (see --api-key)"),
                   err=True)

    c = model.config

    class Server(uvicorn.Server):
        def capture_signals(self):      # ours below: exit 130/143, and stop the generations
            import contextlib
            return contextlib.nullcontext()

        async def startup(self, sockets=None):
            await super().startup(sockets)
            await warm(app, api_key)    # so that the first request is as fast as the next
            click.echo(f"serving {name} ({c.model} {c.layers}x{c.hidden}, {len(model.vocab)} "
                       f"characters) at {url} (API: {url}v1; Ctrl-C stops)", err=True)

    server = Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                   timeout_graceful_shutdown=2))
    caught = []

    def stop(sig, frame):
        caught.append(sig)
        app.state.generations.closing.set()
        server.force_exit = server.should_exit      # a second Ctrl-C: do not wait
        server.should_exit = True
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    server.run(sockets=[sock])
    if caught:
        click.echo("stopped", err=True)
        sys.exit(130 if caught[0] == signal.SIGINT else 143)


def _run_name(given, path):
    """A run folder's name; for a file, its folder's when it is a run's best/latest.npz."""
    if os.path.isdir(given):
        return os.path.basename(os.path.normpath(os.path.abspath(given)))
    stem = os.path.splitext(os.path.basename(path))[0]
    if stem in ("best", "latest"):
        return os.path.basename(os.path.dirname(os.path.abspath(path))) or stem
    return stem


def _listen(host, port):
    """A listening socket on host:port (port 0: a free one), or one line and exit 1."""
    import socket
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as e:
        err(f"cannot listen on {host}:{port}: {e.strerror or e}")
        sys.exit(1)
    return sock
