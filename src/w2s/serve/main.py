"""``w2s serve``: settings (flags over the config file), models, then uvicorn.

Everything a user gives is checked before a model loads, and the methods this server cannot run
are found by running each once (:meth:`~w2s.serve.app.Server.probe`), so a bad setting is one
line at start-up, never an error on the hundredth request.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from w2s.errors import FieldError, FlagNames, W2SError
from w2s.params import SamplingParams

ZOO_DEFAULT = {"base": "zoo:base", "tuned": "zoo:tuned", "untuned": "zoo:untuned"}


def merge(opts: dict[str, Any], explicit: set[str]) -> dict[str, Any]:
    """The flags, with the config file's values where a flag was not given, and the shipped
    zoo where no base is named anywhere."""
    from w2s.serve.config import read_serve_config

    out = dict(opts)
    cfg = read_serve_config(Path(opts["config_file"])) if opts.get("config_file") else None
    out["defaults"], out["methods"] = None, {}
    if cfg is not None:
        for key, value in cfg.model_dump(exclude={"defaults", "methods"}).items():
            if value is not None and key not in explicit:
                out[key] = value
        out["defaults"], out["methods"] = cfg.defaults, cfg.methods
    if not out.get("base") and not out.get("base_url"):
        if out.get("tuned") or out.get("untuned") or out.get("arm") or out.get("reward_model"):
            raise W2SError("give the base (--base MODEL or --base-url URL) with --tuned, "
                           "--untuned or --reward-model")
        out.update(ZOO_DEFAULT)
    return out


def build_server(o: dict[str, Any]) -> Any:
    """The :class:`~w2s.serve.app.Server` the merged settings describe (models loaded)."""
    from w2s.decoding import default_method, get_decoder
    from w2s.guides.build import guide_spec, parse_guide_terms
    from w2s.guides.spec import GuideRef
    from w2s.request import BaseRef, Loader
    from w2s.serve.app import Defaults, Limits, Server

    if o.get("base") and o.get("base_url"):
        raise W2SError("give the base as --base MODEL or as --base-url URL, not both")
    if o.get("base_url") and not o.get("base_model"):
        raise W2SError("--base-url needs --base-model (the served model's name)")
    try:
        spec = guide_spec(o.get("tuned"), o.get("untuned"), o.get("arm"), o.get("reward_model"),
                          o.get("weights"), o.get("normalize") or "raw",
                          parse_guide_terms(tuple(o.get("guide_terms") or ())))
    except FieldError as e:  # named as `w2s serve`'s flags (its config file uses their names)
        raise W2SError(e.named(FlagNames(guide_terms="--guide-term"))) from None
    d = o.get("defaults")
    method = o.get("default_method") or (d.method if d is not None else None)
    if method is not None:
        get_decoder(method)
    base = BaseRef.parse(o["base"] if not o.get("base_url") else {
        "url": o["base_url"], "model": o["base_model"], "tokenizer": o.get("base_tokenizer"),
        "api_key": o.get("base_api_key"), "max_concurrency": o.get("max_concurrency") or 64},
        where="base")
    guide_ref = GuideRef.parse(spec or None, where="")
    try:
        loader = Loader(dtype=o["dtype"], device=o["device"], batch_size=o["batch_size"],
                        device_map=o.get("device_map"), guide_device=o.get("guide_device"),
                        memory_limit=o.get("memory_limit"))
    except FieldError as e:
        raise W2SError(e.named(FlagNames(guide_terms="--guide-term"))) from None
    loader.check(base, guide_ref)  # every reference, before anything loads
    backend = loader.base(base)
    guide = loader.guide(guide_ref)
    method = method or default_method(guide is not None)
    sampling = SamplingParams()
    if d is not None:
        sampling = d.sampling()
    if d is not None and "max_tokens" not in d.model_fields_set:
        d = d.model_copy(update={"max_tokens": min(d.max_tokens, o["max_tokens_limit"])})
    limits = Limits(max_tokens=o["max_tokens_limit"], max_n=o["max_n"],
                    max_rows=o.get("max_rows") or backend.batch_size, max_queue=o["max_queue"],
                    max_body_bytes=o["max_body_bytes"], gather_ms=o["gather_ms"])
    # the built-in default answer length fits any limit; a configured one must fit by itself
    max_tokens = (d.max_tokens if d is not None
                  else min(SamplingParams().max_new_tokens, limits.max_tokens))
    defaults = Defaults(method=method, max_tokens=max_tokens,
                        sampling=sampling, knobs=o.get("methods") or {})
    if defaults.max_tokens > limits.max_tokens:
        raise W2SError(f"the default max_tokens ({defaults.max_tokens}) is over "
                       f"--max-tokens-limit ({limits.max_tokens})")
    runs = Path(o["runs"]) if o.get("runs") else None
    server = Server(backend, guide, model_id=o["served_name"], api_key=o.get("api_key") or None,
                    limits=limits, defaults=defaults, runs_dir=runs)
    server.probe()
    return server


def check_listen(host: str, port: int) -> None:
    """``host:port`` can be listened on here (bound and released at once, with the address
    reuse uvicorn sets): an address this machine lacks or a port in use is one line, not a
    server log that ends in "Application shutdown complete"."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise W2SError(f"--host {host!r} is not an address here ({e.strerror})") from None
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as e:
            raise W2SError(f"cannot listen on {host}:{port} ({e.strerror}): choose another "
                           "--port, or a --host this machine has") from None


def run_server(opts: dict[str, Any], explicit: set[str]) -> None:
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError:
        raise W2SError("w2s serve needs fastapi and uvicorn: pip install 'w2s[serve]'") from None

    from w2s.serve.app import create_app

    o = merge(opts, explicit)
    host, port = o["host"], o["port"]
    check_listen(host, port)  # before the models load: a taken port is one line, at once
    server = build_server(o)
    app = create_app(server)
    shown = f"[{host}]" if ":" in host else host
    avail = [m.name for m in server.method_list().methods if m.available]
    print(f"w2s serve: http://{shown}:{port}  (playground /, API /v1, docs /docs); methods: "
          f"{', '.join(avail)}; default {server.defaults.method}"
          + ("; API key required" if server.api_key else ""), file=sys.stderr, flush=True)
    if host not in ("127.0.0.1", "localhost", "::1") and not server.api_key:
        print("w2s serve: warning: listening beyond this machine without --api-key",
              file=sys.stderr, flush=True)
    level = o.get("log_level") or "info"
    access = not o.get("no_access_log") and level in ("debug", "info")
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s", stream=sys.stderr)
    uvicorn.run(app, host=host, port=port, log_level=level, access_log=access)
