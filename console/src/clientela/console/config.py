"""Settings of the console (env prefix CONSOLE_, shared parts under CLIENTELA_)."""

from __future__ import annotations

from typing import ClassVar, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from clientela.shared.settings import ServiceSettings

PLACEHOLDER_SECRET = "change-me-console-session-secret"  # noqa: S105 - refused outside dev
MIN_SECRET_LENGTH = 32


class ConsoleSettings(ServiceSettings):
    """Where the services are, how sessions are signed, and the console's own read model."""

    model_config = SettingsConfigDict(env_prefix="CONSOLE_", extra="ignore")
    service_name: ClassVar[str] = "console"

    http_port: int = Field(default=8085, ge=0, le=65535)
    group_id: str = Field(default="clientela-console", min_length=1)
    profile_url: str = "http://127.0.0.1:8082"
    scoring_url: str = "http://127.0.0.1:8083"
    campaign_url: str = "http://127.0.0.1:8084"
    service_timeout_s: float = Field(default=10.0, gt=0, description="Per request to a service.")
    session_secret: SecretStr = Field(
        default=SecretStr(PLACEHOLDER_SECRET),
        description="Signs the session cookie and seals the API key inside it.",
    )
    session_max_age_s: int = Field(default=8 * 3600, ge=60, description="Session lifetime.")
    secure_cookies: bool = Field(
        default=False, description="Mark the session cookie Secure (serve behind HTTPS)."
    )
    read_model: bool = Field(
        default=True,
        description="Consume tier-changes, scores and profile topics into the console's tables.",
    )
    timeline_page: int = Field(default=25, ge=1, le=500, description="Touchpoints per page.")

    @model_validator(mode="after")
    def _real_secret_outside_development(self) -> Self:
        secret = self.session_secret.get_secret_value()
        if self.auth.environment != "development" and (
            secret == PLACEHOLDER_SECRET or len(secret) < MIN_SECRET_LENGTH
        ):
            raise ValueError(
                f"CONSOLE_SESSION_SECRET must be a random value of at least "
                f"{MIN_SECRET_LENGTH} characters outside development"
            )
        return self
