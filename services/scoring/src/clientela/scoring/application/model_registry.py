"""The value model in force: fitted BG/NBD + Gamma-Gamma, or the cold-start model before a fit."""

from __future__ import annotations

from clientela.scoring.domain.value_model import (
    BgNbdGammaGammaModel,
    DecayedSpendModel,
    FittedParameters,
    ValueModel,
)


class ModelRegistry:
    """Holds the current model; a refit swaps it for every later score."""

    def __init__(self, fallback: DecayedSpendModel, horizon_weeks: float) -> None:
        self._fallback = fallback
        self._horizon = horizon_weeks
        self._parameters: FittedParameters | None = None

    @property
    def model(self) -> ValueModel:
        """Return the model to score with now."""
        if self._parameters is None:
            return self._fallback
        return BgNbdGammaGammaModel(self._parameters, horizon_periods=self._horizon)

    @property
    def parameters(self) -> FittedParameters | None:
        """Return the parameters in force (None while the cold-start model is used)."""
        return self._parameters

    def install(self, parameters: FittedParameters | None) -> None:
        """Score with these parameters from now on."""
        self._parameters = parameters
