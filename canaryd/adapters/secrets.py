"""Hook signing secrets: a file in the daemon's hooks.secretsDir, or a key of a Secret in
the rollout's namespace that its owner marked for canaryd (label canaryd.io/hook-secret:
"true": canaryd never signs with a Secret nobody meant for it). Read when a hook is called
and, to refuse a rollout naming the field, when it is submitted. Errors never carry the
secret."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

from kubernetes_asyncio import client

from canaryd.adapters.errors import KubeError, NotFound
from canaryd.adapters.retry import kube_call
from canaryd.core.hookspec import Hook
from canaryd.core.settings import Settings

HOOK_SECRET_LABEL = "canaryd.io/hook-secret"  # noqa: S105 (a label key)


class SecretError(ValueError):
    """A hook's signing secret cannot be read (the message names the field)."""


async def read_secret(
    hook: Hook, namespace: str, settings: Settings, api: client.ApiClient | None, where: str,
) -> bytes | None:
    """The signing secret of `hook` (None when it has none); SecretError saying which field
    and why, never the secret."""
    spec = hook.webhook
    if spec is None:
        return None  # a job hook signs nothing
    if spec.secret_file is not None:
        path = Path(settings.hooks.secrets_dir) / spec.secret_file
        try:
            data: bytes = await asyncio.to_thread(path.read_bytes)
        except OSError as exc:
            raise SecretError(f"{where}.webhook.secretFile: cannot read {path}: "
                              f"{exc.strerror or type(exc).__name__}") from None
        if not data.strip():
            raise SecretError(f"{where}.webhook.secretFile: {path} is empty")
        return data.strip()
    ref = spec.secret_ref
    if ref is None:
        return None
    if api is None:
        raise SecretError(f"{where}.webhook.secretRef: no Kubernetes client to read it with")
    core = client.CoreV1Api(api)
    try:
        secret = await kube_call(f"read secret {namespace}/{ref.name}",
                                 lambda: core.read_namespaced_secret(ref.name, namespace))
    except NotFound:
        raise SecretError(f"{where}.webhook.secretRef: no Secret {namespace}/{ref.name}"
                          ) from None
    except KubeError as exc:
        raise SecretError(f"{where}.webhook.secretRef: Secret {namespace}/{ref.name} cannot "
                          f"be read ({type(exc).__name__})") from None
    labels = (secret.metadata.labels if secret.metadata else None) or {}
    if labels.get(HOOK_SECRET_LABEL) != "true":
        raise SecretError(f"{where}.webhook.secretRef: Secret {namespace}/{ref.name} is not "
                          f"labelled {HOOK_SECRET_LABEL}=true (its owner has not given it "
                          "to canaryd)")
    value = (secret.data or {}).get(ref.key)
    if not value:
        raise SecretError(f"{where}.webhook.secretRef: Secret {namespace}/{ref.name} has no "
                          f"key {ref.key!r}")
    return base64.b64decode(value)
