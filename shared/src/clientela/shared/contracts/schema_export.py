"""Export the JSON Schema of every event contract, and of the topic registry, to docs/contracts."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from clientela.shared.contracts import ALL_TOPICS, EVENT_CONTRACTS


def render_schemas() -> dict[str, str]:
    """Return file name -> JSON text for every contract and for the topic registry."""
    files: dict[str, str] = {}
    for contract in EVENT_CONTRACTS:
        schema: dict[str, Any] = contract.model_json_schema(mode="serialization")
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = (
            f"https://clientela.dev/contracts/{contract.EVENT_TYPE}.v{contract.SCHEMA_VERSION}.json"
        )
        files[f"{contract.EVENT_TYPE}.v{contract.SCHEMA_VERSION}.json"] = _dump(schema)
    topics = [
        {
            "name": spec.name,
            "key": spec.key,
            "partitions": spec.partitions,
            "cleanup_policy": spec.cleanup_policy.value,
            "producer": spec.producer,
            "public": spec.public,
            "event_type": spec.contract.EVENT_TYPE if spec.contract else None,
            "schema": (
                f"{spec.contract.EVENT_TYPE}.v{spec.contract.SCHEMA_VERSION}.json"
                if spec.contract
                else None
            ),
            "description": spec.description,
        }
        for spec in ALL_TOPICS
    ]
    files["topics.json"] = _dump({"topics": topics})
    return files


def _dump(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True) + "\n"


def stale_files(directory: Path) -> list[str]:
    """Return the names of exported files that are missing, different or no longer produced."""
    expected = render_schemas()
    stale = [
        name
        for name, text in expected.items()
        if not (directory / name).is_file() or (directory / name).read_text() != text
    ]
    stale.extend(p.name for p in directory.glob("*.json") if p.name not in expected)
    return sorted(stale)


def export(directory: Path) -> list[str]:
    """Write every schema into directory, removing files no longer produced; return names."""
    directory.mkdir(parents=True, exist_ok=True)
    expected = render_schemas()
    for path in directory.glob("*.json"):
        if path.name not in expected:
            path.unlink()
    for name, text in expected.items():
        (directory / name).write_text(text)
    return sorted(expected)


def main() -> None:
    """Command line: write or check the exported schemas."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("directory", type=Path, nargs="?", default=Path("docs/contracts"))
    parser.add_argument("--check", action="store_true", help="fail if the files are stale")
    args = parser.parse_args()
    if args.check:
        stale = stale_files(args.directory)
        if stale:
            raise SystemExit(f"stale contract schemas: {', '.join(stale)} (run make contracts)")
        return
    for name in export(args.directory):
        print(args.directory / name)


if __name__ == "__main__":
    main()
