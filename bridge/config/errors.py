"""The one error type of configuration problems."""

from __future__ import annotations


class ConfigError(ValueError):
    """One or more configuration values are missing, of the wrong type or out of range."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))
