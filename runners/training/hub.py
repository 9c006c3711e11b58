"""Hub model ids resolved before a run writes anything: a name that is neither a built-in nor a local directory
must be in the Hugging Face cache or answer on the hub, within seconds. Without this check the first sign of a
typo ("tiny-bert-large") or of an unreachable hub is transformers retrying for half a minute after the store,
the queue and the run were created.

Only huggingface_hub is imported (no torch): `subnets run` calls this before it opens anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from registry.models import BUILTIN_MODELS, hub_model_ids, nearest_encoder, resolve_path
from registry.schema import RunSpec

HUB_TIMEOUT_S = 5.0  # one request to the hub's model API, no retries: an unreachable hub is said in seconds


@dataclass(frozen=True)
class HubProblem:
    experiment: str
    name: str  # the model.name (or model.tokenizer) as declared
    key: str  # model.name or model.tokenizer
    message: str


def check_hub_models(runs: list[RunSpec], timeout: float = HUB_TIMEOUT_S) -> list[HubProblem]:
    """Every hub id the runs name, checked once: in the local cache (then nothing is asked of the network), else
    on the hub unless HF_HUB_OFFLINE is set. A problem names the experiment, the key and what to do."""
    ids = hub_model_ids(runs)
    if not ids:
        return []
    from huggingface_hub import HfApi, constants, try_to_load_from_cache
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    problems = []
    for (name, revision), (experiment, key) in ids.items():
        cached = try_to_load_from_cache(
            name, "config.json" if key == "model.name" else "tokenizer_config.json", revision=revision
        )
        if isinstance(cached, str):
            continue
        at = f" at revision {revision!r}" if revision else ""
        if constants.HF_HUB_OFFLINE:
            problems.append(
                HubProblem(
                    experiment,
                    name,
                    key,
                    f"{name!r}{at} is not in the Hugging Face cache and HF_HUB_OFFLINE is set{nearest_encoder(name)}",
                )
            )
            continue
        try:
            HfApi().model_info(name, revision=revision, timeout=timeout)
        except RepositoryNotFoundError:
            problems.append(
                HubProblem(
                    experiment,
                    name,
                    key,
                    f"no model {name!r} on the hub (or it is private and no token was given){nearest_encoder(name)}",
                )
            )
        except RevisionNotFoundError:
            problems.append(HubProblem(experiment, name, key, f"the hub has {name!r} but no revision {revision!r}"))
        except HfHubHTTPError as e:
            if e.response is not None and e.response.status_code in (401, 403):
                continue  # gated or private: the token the download sends may open it
            problems.append(HubProblem(experiment, name, key, f"the hub answered {e} for {name!r}"))
        except Exception as e:  # connection refused, timed out, DNS: the hub is unreachable from here
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            problems.append(
                HubProblem(
                    experiment,
                    name,
                    key,
                    f"cannot reach the hub ({constants.ENDPOINT}) to "
                    f"resolve {name!r}: {reason}; with a cached copy, set HF_HUB_OFFLINE=1"
                    f"{nearest_encoder(name)}",
                )
            )
    return problems


def resolved_revision(name: str, revision: str | None, base_dir: str) -> str | None:
    """The commit a hub model id (at `revision`, a branch, tag or commit) resolved to, read off the Hugging Face
    cache a load just used: its snapshot directory is named by the commit. None for a built-in or local model."""
    if name in BUILTIN_MODELS or resolve_path(name, base_dir) is not None:
        return None
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(name, "config.json", revision=revision)
    if not isinstance(cached, str):
        return None
    commit = Path(cached).parent.name
    return commit if len(commit) == 40 and all(c in "0123456789abcdef" for c in commit) else None
