"""Secrets the service must never write down.

No secret in a URL it takes: every such URL is written in plain text to the experiment
(``spec.json``, ``study.json``) and printed, so a password in it would travel with every copy of
the experiment. :func:`check_no_secret` is the one check for ``storage/study_storage``,
``storage/mlflow_uri`` and an ``s3://`` ``storage/path``; :func:`redact` is how such a URL may be
shown.

No cloud key handed to Ray where it is logged: :func:`aws_keys_kept_from_trials`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qsl, unquote_plus

from ptycho_model.errors import ConfigError

from .storage.fs import is_remote
from .storage.layout import SPEC_FILE, STUDY_META

__all__ = ["AWS_KEYS", "SecretInURL", "aws_keys_kept_from_trials", "check_no_secret", "redact",
           "secret_in"]

MASK = "***"

# scheme://user:password@ — the userinfo as SQLAlchemy reads it: the user stops at ':', '/' or
# '@', the password runs to the last '@' before the host (it may hold '/', '?' or '#').
_USERINFO = re.compile(r"^(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@?#]*):(?P<password>[^@]*)@")
# query keys that hold a credential: whole words of the key (split at '_', '-', '.') ...
_SECRET_WORDS = {"password", "passwd", "pwd", "secret", "token", "key", "apikey",
                 "authorization"}
# ... or anywhere in it (sslpassword, accesstoken, x-amz-security-token; not sslkey, a path)
_SECRET_PARTS = ("password", "passwd", "secret", "token", "apikey", "authorization")


class SecretInURL(ConfigError):
    """A URL holding a password or token (exit code 2); the message shows it redacted."""


def _password(url: str) -> str | None:
    m = _USERINFO.match(url)
    if m is None or not m.group("password"):
        return None
    pw = m.group("password")
    if re.fullmatch(r"\d*(/.*)?", pw) and "/" in pw:  # host:port/path@...: a port, no password
        return None
    return pw


def _secret_key(key: str) -> bool:
    k = key.strip().lower()
    return bool(set(re.split(r"[_\-.\s]+", k)) & _SECRET_WORDS) or \
        any(part in k for part in _SECRET_PARTS)


def _query(url: str) -> str:
    m = _USERINFO.match(url)
    rest = url[m.end():] if m else url
    if "?" not in rest:
        return ""
    return rest.split("?", 1)[1].split("#", 1)[0]


def secret_in(url: str) -> list[str]:
    """What in ``url`` is a secret: ``"userinfo password"`` for a password before the host, and
    the name of each query key that holds a credential (with a value); empty for a clean URL."""
    if not url:
        return []
    found = ["userinfo password"] if _password(url) is not None else []
    found += [k for k, v in parse_qsl(_query(url), keep_blank_values=True)
              if v and _secret_key(k)]
    return found


def redact(url: str) -> str:
    """``url`` with the password of its userinfo and every credential in its query as ``***``:
    ``postgresql://optuna:***@host/db``, ``http://host/x?token=***``."""
    if not url:
        return url
    if _password(url) is not None:
        m = _USERINFO.match(url)
        url = f"{m.group('head')}:{MASK}@{url[m.end():]}"
    q = _query(url)
    if not q:
        return url

    def mask(part: str) -> str:
        key, eq, value = part.partition("=")
        return f"{key}={MASK}" if eq and value and _secret_key(unquote_plus(key)) else part

    cleaned = "".join(mask(p) for p in re.split(r"([&;])", q))
    head, _, tail = url.rpartition("?" + q)
    return f"{head}?{cleaned}{tail}"


def _where_instead(field: str, url: str) -> str:
    scheme = url.split(":", 1)[0].lower()
    if field == "storage/path" or scheme.startswith("s3"):
        return ("give S3 its keys through the environment (AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY) or an AWS profile (AWS_PROFILE, ~/.aws/credentials) on "
                "every node")
    if field == "storage/mlflow_uri" and scheme in ("http", "https"):
        return ("give the MLflow server's credentials through the environment: "
                "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN)")
    if scheme.startswith(("postgres", "postgresql")):
        return ("give the password to the database client on the machine that runs the driver: "
                "~/.pgpass (mode 600) or PGPASSWORD")
    if scheme.startswith("mysql"):
        return ("give the password to the database client on the machine that runs the driver "
                "(an option file such as ~/.my.cnf)")
    return "give it through the environment or the client's own credentials file instead"


def check_no_secret(field: str, url: str) -> None:
    """Refuse ``url`` (the value of the spec field ``field``) if it holds a password in its
    userinfo or a credential in its query string: :class:`SecretInURL`, whose message names
    the field, shows the URL redacted and says where the secret goes instead."""
    found = secret_in(url)
    if not found:
        return
    files = f"{SPEC_FILE} and {STUDY_META}" if field == "storage/study_storage" else SPEC_FILE
    keys = list(dict.fromkeys(k for k in found if k != "userinfo password"))
    parts = (["a password"] if "userinfo password" in found else []) + \
        ([f"a secret in its query string ({', '.join(keys)})"] if keys else [])
    raise SecretInURL(
        f"{field}={redact(url)!r} carries {' and '.join(parts)}, which would be written in plain "
        f"text to the experiment's {files} and printed; leave it out of the URL and "
        f"{_where_instead(field, url)}")


AWS_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SECURITY_TOKEN",
            "AWS_SESSION_TOKEN")


@contextmanager
def aws_keys_kept_from_trials(experiment_uri: str) -> Iterator[None]:
    """While a local experiment runs, Ray Tune does not copy the driver's AWS keys into its
    trials' ``runtime_env``.

    Tune hands every trial actor the driver's ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
    ``AWS_SECURITY_TOKEN`` and ``AWS_SESSION_TOKEN`` as ``runtime_env={"env_vars": ...}``
    (``ray.tune.execution.class_cache.ENV_VARS_TO_PROPAGATE``), and Ray writes each runtime_env
    it sets up in plain text to ``<ray temp dir>/session_*/logs/runtime_env_agent.log``, which
    the Ray dashboard serves. The trials of a local experiment never touch S3, so there they are
    left out (Tune's list is restored on exit). An ``s3://`` experiment keeps Tune's behaviour:
    its trials upload their checkpoints and may need the keys on nodes that lack them; give
    every node an AWS profile or instance role instead, and no key is in the driver's
    environment to be copied."""
    propagated = None
    if not is_remote(experiment_uri):
        try:
            from ray.tune.execution import class_cache

            propagated = class_cache.ENV_VARS_TO_PROPAGATE
        except (ImportError, AttributeError):  # another Ray: nothing of ours to change
            propagated = None
    if not isinstance(propagated, set):
        yield
        return
    dropped = propagated & set(AWS_KEYS)
    propagated.difference_update(dropped)
    try:
        yield
    finally:
        propagated.update(dropped)
