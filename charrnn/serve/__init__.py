"""A model behind the OpenAI-compatible completions API (`charrnn serve`, docs/serve.md).

    request.py      the request body checked against the limits: a Completion, or an
                    ApiError whose OpenAI-style error object names the field
    generation.py   generations in worker threads (the event loop stays free), each with
                    its own Model and sampler; counted, bounded, cancelled on hang-up
    app.py          the ASGI app (Starlette): routes, API key, Host check, server-sent events
    page.py         the one page at / (inline script, no outside assets)

Needs the serve extra (`pip install "charrnn[serve]"`): only app.py imports Starlette.
"""
