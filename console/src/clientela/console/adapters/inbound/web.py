"""The console's pages: sign-in, customer 360, customer base, campaigns (server-rendered)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, Request, Response, status
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.middleware.sessions import SessionMiddleware

from clientela.console.adapters.inbound import figures
from clientela.console.adapters.inbound.session import (
    KeySeal,
    User,
    csrf_ok,
    csrf_token,
    flash,
    signed_in,
    take_flash,
)
from clientela.console.adapters.inbound.session import sign_in as start_session
from clientela.console.application import pages
from clientela.console.application.ports import (
    KeyRejectedError,
    ReadModel,
    RequestRefusedError,
    ScopeDeniedError,
    Services,
    ServiceUnavailableError,
    TimelineFilter,
)
from clientela.console.config import ConsoleSettings
from clientela.console.domain.charts import percent
from clientela.console.domain.describe import CHANNEL_WORDS, how, outcome, who

HERE = Path(__file__).parent
SESSION_COOKIE = "clientela_console"
# Authenticated pages show personal data: never cached, never framed, no inline script.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class WebContext:
    """What the pages need: settings, templates, the key seal, and (once started) the ports."""

    def __init__(self, settings: ConsoleSettings) -> None:
        self.settings = settings
        self.seal = KeySeal(settings.session_secret.get_secret_value(), settings.session_max_age_s)
        self.templates = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(default=True),
            undefined=StrictUndefined,
        )
        self.templates.filters.update(
            money=_money, pct=percent, when=_when, words=_words, short=_short, how=how, who=who
        )
        self.templates.globals.update(outcome_words=outcome, channel_words=CHANNEL_WORDS)
        self._services: Services | None = None
        self.read_model: ReadModel | None = None

    @property
    def services(self) -> Services:
        """Return the services' client (set when the app starts)."""
        if self._services is None:
            raise RuntimeError("the console has not started")
        return self._services

    def attach(self, services: Services, read_model: ReadModel | None) -> None:
        """Give the pages their ports (lifespan start)."""
        self._services = services
        self.read_model = read_model

    def detach(self) -> None:
        """Forget the ports (lifespan end)."""
        self._services = None
        self.read_model = None

    def render(
        self,
        request: Request,
        template: str,
        user: User | None,
        status_code: int = 200,
        **values: Any,
    ) -> HTMLResponse:
        """Render a page with the layout's values (user, CSRF token, flash message)."""
        html = self.templates.get_template(template).render(
            request=request,
            user=user,
            csrf=csrf_token(request),
            flash=take_flash(request),
            path=request.url.path,
            **values,
        )
        return HTMLResponse(html, status_code=status_code)


class LoginRequiredError(Exception):
    """The page needs a signed-in user."""


def current_user(request: Request) -> User:
    """Return the signed-in user, or send the browser to the sign-in page."""
    ctx: WebContext = request.app.state.web
    user = signed_in(request, ctx.seal)
    if user is None:
        raise LoginRequiredError
    return user


UserDep = Annotated[User, Depends(current_user)]


def _money(value: object, currency: str = "") -> str:
    try:
        amount = float(str(value))
    except ValueError:
        return str(value)
    return f"{amount:,.2f}" + (f" {currency}" if currency else "")


def _when(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _short(value: object) -> str:
    text = str(value)
    return text if len(text) <= 9 else text[:8] + "…"


def _words(value: object) -> str:
    return str(value).replace("_", " ")


def _safe_next(target: str | None) -> str:
    # Only paths of this site: never an absolute or scheme-relative URL (open redirect).
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/customers"


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=status.HTTP_303_SEE_OTHER)


def install(app: FastAPI, ctx: WebContext) -> None:
    """Add the session, security headers, static files and every page to the app."""
    settings = ctx.settings
    app.state.web = ctx
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.session_secret.get_secret_value(),
        session_cookie=SESSION_COOKIE,
        max_age=settings.session_max_age_s,
        same_site="strict",
        https_only=settings.secure_cookies,
    )

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if request.url.path.startswith("/static/"):
            # The style sheet and script hold no personal data: let browsers keep them.
            response.headers["Cache-Control"] = "public, max-age=3600"
        return response

    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.exception_handler(LoginRequiredError)
    async def _login_required(request: Request, _exc: Exception) -> Response:
        return _see_other("/login?" + urlencode({"next": request.url.path}))

    @app.exception_handler(KeyRejectedError)
    async def _key_rejected(request: Request, _exc: Exception) -> Response:
        request.session.clear()
        flash(request, "error", "The services no longer accept your key: sign in again.")
        return _see_other("/login")

    @app.exception_handler(ScopeDeniedError)
    async def _denied(request: Request, exc: Exception) -> Response:
        user = signed_in(request, ctx.seal)
        return ctx.render(request, "error.html", user, 403, title="Not allowed", message=str(exc))

    @app.exception_handler(ServiceUnavailableError)
    async def _unavailable(request: Request, exc: Exception) -> Response:
        user = signed_in(request, ctx.seal)
        return ctx.render(
            request, "error.html", user, 503, title="A service is not answering", message=str(exc)
        )

    async def form(request: Request) -> dict[str, str]:
        data = await request.form()
        return {k: v for k, v in data.items() if isinstance(v, str)}

    def refuse_forgery(request: Request, fields: dict[str, str]) -> Response | None:
        if csrf_ok(request, fields.get("csrf_token")):
            return None
        return HTMLResponse("The form has expired; go back and try again.", status_code=403)

    @app.get("/", include_in_schema=False)
    async def home() -> Response:
        return _see_other("/customers")

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    async def login_page(request: Request, next: str | None = None) -> Response:
        return ctx.render(request, "login.html", None, next=_safe_next(next), error=None)

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        fields = await form(request)
        if (refused := refuse_forgery(request, fields)) is not None:
            return refused
        key = fields.get("api_key", "").strip()
        target = _safe_next(fields.get("next"))
        error, code = None, 200
        try:
            session = await pages.sign_in(ctx.services, key) if key else None
        except KeyRejectedError:
            error, code, session = "The services do not know this key.", 401, None
        except ScopeDeniedError:
            error, code, session = "This key may not read customer data.", 403, None
        except ServiceUnavailableError as exc:
            error, code, session = f"The key cannot be checked now ({exc}).", 503, None
        if session is None:
            return ctx.render(
                request,
                "login.html",
                None,
                code if key else 400,
                next=target,
                error=error or "Enter an API key.",
            )
        start_session(request, ctx.seal, key, session.admin)
        return _see_other(target)

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        fields = await form(request)
        if (refused := refuse_forgery(request, fields)) is not None:
            return refused
        request.session.clear()
        return _see_other("/login")

    @app.get("/customers", response_class=HTMLResponse, include_in_schema=False)
    async def customers(request: Request, user: UserDep) -> Response:
        top = await ctx.read_model.top_profiles(12) if ctx.read_model is not None else []
        return ctx.render(
            request,
            "customers.html",
            user,
            types=pages.IDENTIFIER_TYPES,
            top=top,
            chosen="customer_id",
            error=None,
        )

    @app.post("/customers/search", include_in_schema=False)
    async def search(request: Request, user: UserDep) -> Response:
        fields = await form(request)
        if (refused := refuse_forgery(request, fields)) is not None:
            return refused
        id_type = fields.get("id_type", "customer_id")
        if id_type not in pages.IDENTIFIER_TYPES:
            id_type = "customer_id"
        found = await pages.find_profile(ctx.services, user.key, id_type, fields.get("value", ""))
        if found is not None:
            return _see_other(f"/customers/{found}")
        top = await ctx.read_model.top_profiles(12) if ctx.read_model is not None else []
        return ctx.render(
            request,
            "customers.html",
            user,
            404,
            types=pages.IDENTIFIER_TYPES,
            top=top,
            chosen=id_type,
            error="No customer has that identifier.",
        )

    @app.get("/customers/{profile_id}", response_class=HTMLResponse, include_in_schema=False)
    async def customer(
        request: Request,
        profile_id: str,
        user: UserDep,
        before: datetime | None = None,
        before_event_id: str | None = None,
        channel: str | None = None,
    ) -> Response:
        page = TimelineFilter(
            limit=settings.timeline_page,
            before=before,
            before_event_id=before_event_id or None,
            channel=channel or None,
        )
        view = await pages.customer_360(ctx.services, ctx.read_model, user.key, profile_id, page)
        if view is None:
            return ctx.render(
                request,
                "error.html",
                user,
                404,
                title="Unknown customer",
                message="No profile has this id (it may have been erased).",
            )
        if view.profile.profile_id != profile_id:
            flash(request, "info", f"Profile {profile_id} was merged into this one.")
            return _see_other(f"/customers/{view.profile.profile_id}")
        now = datetime.now(UTC)
        return ctx.render(
            request,
            "customer.html",
            user,
            view=view,
            channel=channel or "",
            channels=sorted(CHANNEL_WORDS),
            history_chart=figures.tier_history(view.tier_history, now),
            channel_chart=figures.profile_channels(view.profile),
        )

    @app.post("/customers/{profile_id}/split", include_in_schema=False)
    async def split(request: Request, profile_id: str, user: UserDep) -> Response:
        fields_multi = await request.form()
        fields = {k: v for k, v in fields_multi.items() if isinstance(v, str)}
        if (refused := refuse_forgery(request, fields)) is not None:
            return refused
        if not user.admin:
            flash(request, "error", "Splitting a profile needs an admin key.")
            return _see_other(f"/customers/{profile_id}")
        chosen = [
            (kind, value)
            for item in fields_multi.getlist("identifier")
            if isinstance(item, str)
            for kind, _, value in [item.partition(":")]
            if kind and value
        ]
        try:
            outcome_ = await pages.split_profile(
                ctx.services, user.key, profile_id, chosen, fields.get("reason", "").strip()
            )
        except ValueError as exc:
            flash(request, "error", str(exc))
        except (RequestRefusedError, ScopeDeniedError) as exc:
            flash(request, "error", f"The split was refused: {exc.message}")
        else:
            flash(
                request,
                "ok",
                f"Split {outcome_.identifiers_moved} identifier(s) and "
                f"{outcome_.touchpoints_moved} touchpoint(s) off into profile "
                f"{outcome_.new_profile_id}.",
            )
        return _see_other(f"/customers/{profile_id}")

    @app.get("/base", response_class=HTMLResponse, include_in_schema=False)
    async def customer_base(request: Request, user: UserDep) -> Response:
        view = await pages.customer_base(ctx.services, ctx.read_model, user.key, datetime.now(UTC))
        summary = view.summary
        return ctx.render(
            request,
            "customer_base.html",
            user,
            view=view,
            pareto_chart=figures.pareto(summary) if summary else None,
            count_chart=figures.tier_bars(summary, by_value=False) if summary else None,
            value_chart=figures.tier_bars(summary, by_value=True) if summary else None,
            moves_chart=figures.migrations(view.migrations) if view.migrations else None,
            mix_chart=figures.channel_mix(view.channel_mix, "Touchpoints per channel, by tier")
            if view.channel_mix
            else None,
            preferred_chart=figures.channel_mix(
                view.preferred_channels, "Preferred inbound channel, by tier"
            )
            if view.preferred_channels
            else None,
        )

    @app.get("/campaigns", response_class=HTMLResponse, include_in_schema=False)
    async def campaigns(request: Request, user: UserDep) -> Response:
        rows, notices = await pages.campaigns_overview(ctx.services, user.key)
        return ctx.render(request, "campaigns.html", user, rows=rows, problems=notices)

    @app.get("/campaigns/{campaign_id}", response_class=HTMLResponse, include_in_schema=False)
    async def campaign(request: Request, campaign_id: str, user: UserDep) -> Response:
        detail = await pages.campaign_detail(ctx.services, user.key, campaign_id)
        if detail is None:
            return ctx.render(
                request,
                "error.html",
                user,
                404,
                title="Unknown campaign",
                message="No campaign has this id.",
            )
        return ctx.render(
            request,
            "campaign.html",
            user,
            detail=detail,
            uplift_chart=figures.uplift(detail.roi) if detail.roi else None,
            learning_chart=figures.learning(detail.learning) if detail.learning else None,
        )
