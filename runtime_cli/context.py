"""What every command handler gets: the parsed arguments, the configuration, an API client."""

from __future__ import annotations

import argparse
import sys
from functools import cached_property

from rich.console import Console
from rich.text import Text

from runtime_cli import config as config_mod
from runtime_cli.api import Api


class Context:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self._api: Api | None = None

    @cached_property
    def config(self) -> config_mod.Config:
        return config_mod.resolve(
            url=getattr(self.args, "url", None), key=getattr(self.args, "key", None)
        )

    @property
    def json(self) -> bool:
        return bool(getattr(self.args, "json", False))

    def api(self) -> Api:
        if self._api is None:
            self._api = Api(self.config)
        return self._api

    def close(self) -> None:
        if self._api is not None:
            self._api.http.close()

    def say(self, text: str, style: str = "") -> None:
        """A confirmation or hint on stderr (stdout carries only data)."""
        Console(file=sys.stderr, highlight=False, soft_wrap=True).print(Text(text, style=style))
