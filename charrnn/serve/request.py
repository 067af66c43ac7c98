"""A completion request's body, checked: OpenAI's /v1/completions fields, each bounded.

Unknown fields are ignored (as OpenAI's server does); a field of the wrong type is a
400, a value over a bound too (413 for the body itself); each error names its field in
an OpenAI-style error object. max_tokens counts characters (this model's tokens)."""
import json
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Bounds on every request (the command's --max-* options)."""
    body_bytes: int = 1 << 20       # the request body
    prompt_chars: int = 16_384      # all prompts of a request together
    max_tokens: int = 4096          # characters generated per choice
    n: int = 16                     # choices per request (prompts x n)
    concurrent: int = 16            # generations running at once (one per request)
    stops: int = 4                  # stop strings (OpenAI's bound)
    stop_chars: int = 256           # characters of one stop string


class ApiError(Exception):
    """An error answered as OpenAI answers it: status, and
    {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status, message, param=None, type="invalid_request_error", code=None):
        super().__init__(message)
        self.status, self.message, self.param, self.type, self.code = \
            status, message, param, type, code

    def body(self):
        return {"error": {"message": self.message, "type": self.type, "param": self.param,
                          "code": self.code}}


@dataclass(frozen=True)
class Completion:
    prompts: tuple          # one str per prompt (a string prompt is a list of one)
    max_tokens: int
    temperature: float
    top_p: float
    top_k: int
    n: int
    stop: tuple             # stop strings, maybe empty
    seed: int | None
    stream: bool
    include_usage: bool
    echo: bool


# OpenAI's defaults (max_tokens 16, temperature 1); top_k is an extension (0: all)
DEFAULTS = dict(max_tokens=16, temperature=1.0, top_p=1.0, top_k=0, n=1, seed=None,
                stream=False, echo=False, include_usage=False)
MAX_SEED = 2 ** 128


def _bad(message, param, status=400, code=None):
    return ApiError(status, message, param, code=code)


def _integer(body, name, lo, hi, hi_code="too_large"):
    v = body.get(name)
    if v is None:
        return DEFAULTS[name]
    if not isinstance(v, int) or isinstance(v, bool):
        raise _bad(f"'{name}' must be an integer, not {json.dumps(v)[:40]}", name)
    if v < lo:
        raise _bad(f"'{name}' must be at least {lo}, not {v}", name)
    if v > hi:
        raise _bad(f"'{name}' must be at most {hi} on this server, not {v}", name, code=hi_code)
    return v


def _number(body, name, lo, hi=None, lo_open=False):
    v = body.get(name)
    if v is None:
        return DEFAULTS[name]
    if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
        raise _bad(f"'{name}' must be a number, not {json.dumps(v)[:40]}", name)
    if v < lo or (lo_open and v == lo) or (hi is not None and v > hi):
        rng = f"{'>' if lo_open else '>='} {lo}" + (f" and <= {hi}" if hi is not None else "")
        raise _bad(f"'{name}' must be {rng}, not {v}", name)
    return float(v)


def _flag(body, name):
    v = body.get(name)
    if v is None:
        return DEFAULTS[name]
    if not isinstance(v, bool):
        raise _bad(f"'{name}' must be true or false, not {json.dumps(v)[:40]}", name)
    return v


def _strings(v, name, what):
    """A string or a non-empty list of strings, as a tuple."""
    if isinstance(v, str):
        return (v,)
    if isinstance(v, list) and v and all(isinstance(s, str) for s in v):
        return tuple(v)
    raise _bad(f"'{name}' must be {what}", name)


def parse(raw: bytes, limits: Limits, vocab) -> Completion:
    """The body of POST /v1/completions as a Completion; ApiError when it is not JSON,
    not an object, a field has the wrong type or a value is out of bounds. `vocab` is
    the model's vocab.Vocab: a prompt holding other characters is refused."""
    if len(raw) > limits.body_bytes:
        raise ApiError(413, f"the request body is larger than {limits.body_bytes} bytes",
                       None, code="request_too_large")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as e:     # bad UTF-8 or JSON, too deep, huge ints
        raise _bad(f"the body is not valid JSON: {str(e)[:200]}", None) from None
    if not isinstance(body, dict):
        raise _bad("the body must be a JSON object", None)
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise _bad("'model' must be a string", "model")

    from charrnn.vocab import strip_bom
    prompt = body.get("prompt")
    prompts = ("",) if prompt is None else _strings(
        prompt, "prompt", "a string or a non-empty list of strings (token arrays are not "
                          "supported: this model's tokens are characters)")
    prompts = tuple(strip_bom(p) for p in prompts)
    if sum(map(len, prompts)) > limits.prompt_chars:
        raise _bad(f"'prompt' is longer than {limits.prompt_chars} characters", "prompt",
                   code="too_large")
    if len(prompts) > limits.n:
        raise _bad(f"'prompt' lists more than {limits.n} prompts", "prompt", code="too_large")
    unknown = vocab.missing("".join(prompts))
    if unknown:
        raise _bad(f"'prompt' has characters not in the model's vocabulary: "
                   f"{''.join(unknown)[:100]!r}", "prompt")

    max_tokens = _integer(body, "max_tokens", 1, limits.max_tokens)
    n = _integer(body, "n", 1, limits.n)
    if n * len(prompts) > limits.n:
        raise _bad(f"'n' times the prompts ({n} x {len(prompts)}) is more than {limits.n} "
                   f"choices", "n", code="too_large")
    stop = body.get("stop")
    stop = () if stop is None else _strings(stop, "stop", "a string or a list of strings")
    if len(stop) > limits.stops:
        raise _bad(f"'stop' lists more than {limits.stops} strings", "stop", code="too_large")
    if any(s == "" for s in stop):
        raise _bad("'stop' strings must not be empty", "stop")
    if any(len(s) > limits.stop_chars for s in stop):
        raise _bad(f"a 'stop' string is longer than {limits.stop_chars} characters", "stop",
                   code="too_large")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise _bad("'stream_options' must be an object", "stream_options")
    include_usage = _flag(options or {}, "include_usage")
    return Completion(
        prompts=prompts, max_tokens=max_tokens,
        temperature=_number(body, "temperature", 0),
        top_p=_number(body, "top_p", 0, 1, lo_open=True),
        top_k=_integer(body, "top_k", 0, 1 << 30),
        n=n, stop=stop,
        seed=_integer(body, "seed", 0, MAX_SEED - 1, hi_code=None),
        stream=_flag(body, "stream"), include_usage=include_usage, echo=_flag(body, "echo"))
