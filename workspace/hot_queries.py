"""The queries behind the requests that every open tab repeats each second, written once in SQL.

Building and compiling an ORM query costs more than running it. On the 2-core bench box, the job
card's access query took about 2 ms to build and compile, 0.5 ms to run and 1 ms to become objects.
The session's user took 0.8 ms through `get(pk=...)` and 0.4 ms like this. So these few queries are
spelled out here, once per process, from the models' own metadata (tables, columns, the database's
converters). A renamed column still follows its model, and the rows come back as model instances,
as the ORM would return them with `.only()`: the same classes, methods and deferred loading.

Everything else goes through the ORM. Add a query here only when a benchmark shows that it matters.
"""

from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import connections, router
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model

from workspace.api.models import ApiToken, ApiTokenJob
from workspace.models import Budget, Image, Job, LedgerEntry, Membership, Project

MICRO_DOLLAR = Decimal("0.000001")  # the money columns' places (workspace.models.MONEY)


class Columns:
    """Some fields of one model under a table alias: the SELECT list, and rows back into instances."""

    def __init__(self, model: type[Model], alias: str, names: Sequence[str]) -> None:
        self.model = model
        self.alias = alias
        # In the model's own order, which from_db expects when some fields are left deferred.
        wanted = {model._meta.get_field(name) for name in names}
        self.fields = [field for field in model._meta.concrete_fields if field in wanted]
        if len(self.fields) != len(wanted):
            raise ValueError(f"{model.__name__}: only concrete fields can be columns")
        if model._meta.pk not in self.fields:
            raise ValueError(f"{model.__name__}: the primary key must be among the columns")
        self.attnames = [field.attname for field in self.fields]
        self._converters: dict[str, list[tuple[int, Any, list]]] = {}

    def __len__(self) -> int:
        return len(self.fields)

    def table(self, connection: BaseDatabaseWrapper) -> str:
        return f"{connection.ops.quote_name(self.model._meta.db_table)} {self.alias}"

    def column(self, connection: BaseDatabaseWrapper, name: str) -> str:
        return self._qualified(connection, self.model._meta.get_field(name))

    def select(self, connection: BaseDatabaseWrapper) -> str:
        return ", ".join(self._qualified(connection, field) for field in self.fields)

    def _qualified(self, connection: BaseDatabaseWrapper, field) -> str:
        return f"{self.alias}.{connection.ops.quote_name(field.column)}"

    def load(self, connection: BaseDatabaseWrapper, values: Sequence[Any]) -> Model:
        """An instance from this model's part of a row, converted as the ORM converts it (SQLite keeps
        dates as text, for one)."""
        values = list(values)
        for position, column, converters in self._converters_for(connection):
            for converter in converters:
                # The column expression, as the ORM's compiler passes it (SQLite's decimal converter
                # reads its output_field).
                values[position] = converter(values[position], column, connection)
        return self.model.from_db(connection.alias, self.attnames, values)

    def _converters_for(self, connection: BaseDatabaseWrapper) -> list[tuple[int, Any, list]]:
        if connection.alias not in self._converters:
            found = []
            for position, field in enumerate(self.fields):
                column = field.get_col(self.alias)
                converters = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
                if converters:
                    found.append((position, column, converters))
            self._converters[connection.alias] = found
        return self._converters[connection.alias]


_statements: dict[tuple[Callable, str], str] = {}


def _fetch(
    model: type[Model], statement: Callable[[BaseDatabaseWrapper], str], params: Sequence[Any]
) -> tuple[BaseDatabaseWrapper, list]:
    """Run the SQL that `statement` writes for the model's database, written once per database."""
    connection = connections[router.db_for_read(model)]
    key = (statement, connection.alias)
    if key not in _statements:
        _statements[key] = statement(connection)
    with connection.cursor() as cursor:
        cursor.execute(_statements[key], params)
        return connection, cursor.fetchall()


# -- The session's user, on every request ---------------------------------------------------------------

User = get_user_model()
SESSION_USER = Columns(User, "u", [field.name for field in User._meta.concrete_fields])


def _user_sql(connection: BaseDatabaseWrapper) -> str:
    return (
        f"SELECT {SESSION_USER.select(connection)} FROM {SESSION_USER.table(connection)} "
        f"WHERE {SESSION_USER.column(connection, User._meta.pk.name)} = %s"
    )


def user_by_id(user_id: Any) -> AbstractBaseUser | None:
    """What `User.objects.get(pk=user_id)` returns, or None."""
    connection, rows = _fetch(User, _user_sql, [User._meta.pk.to_python(user_id)])
    return SESSION_USER.load(connection, rows[0]) if rows else None


# -- The job card, polled every second by each open card --------------------------------------------------

CARD_JOB = Columns(
    Job,
    "j",
    (
        *("id", "project", "author", "status", "kind", "prompt", "model", "size", "quality"),
        *("background", "n", "created_at", "attempts", "max_attempts", "retry_reason"),
        *("next_attempt_at", "error_message", "preview", "preview_count"),
        # An overnight card names its batch's status: one query more, for those cards alone (every 30 s).
        *("lane", "overnight_batch"),
    ),
)
CARD_PROJECT = Columns(Project, "p", ("id", "name", "archived_at", "created_at", "created_by"))
CARD_AUTHOR = Columns(User, "a", (User._meta.pk.name, User.USERNAME_FIELD))
CARD_IMAGES = Columns(Image, "i", ("id", "job", "project", "index", "width", "height", "composite"))
CARD_MEMBERSHIP = Columns(Membership, "m", ("id",))  # joined for the viewer's role only


def _waiting_ahead_sql(connection: BaseDatabaseWrapper) -> str:
    """A queued job's author's waiting jobs that go before it (Job.objects.waiting_ahead), else 0."""
    quote = connection.ops.quote_name
    fields = {field.name: field for field in Job._meta.concrete_fields}
    author, status, lane, enqueued, pk = (
        quote(fields[name].column) for name in ("author", "status", "lane", "enqueued_at", "id")
    )
    mine = CARD_JOB.alias
    later = (
        f"(w.{enqueued} < {mine}.{enqueued} OR (w.{enqueued} = {mine}.{enqueued} AND w.{pk} < {mine}.{pk}) "
        f"OR ({mine}.{enqueued} IS NULL AND (w.{enqueued} IS NOT NULL OR w.{pk} < {mine}.{pk})))"
    )
    return (
        f"CASE WHEN {mine}.{status} = %s THEN (SELECT COUNT(*) FROM {quote(Job._meta.db_table)} w "
        f"WHERE w.{author} = {mine}.{author} AND w.{status} IN (%s, %s) "
        f"AND (w.{lane} < {mine}.{lane} OR (w.{lane} = {mine}.{lane} AND {later}))) ELSE 0 END"
    )


def _job_card_sql(connection: BaseDatabaseWrapper) -> str:
    membership, images = CARD_MEMBERSHIP, CARD_IMAGES
    return (
        f"SELECT {CARD_JOB.select(connection)}, {CARD_PROJECT.select(connection)}, "
        f"{CARD_AUTHOR.select(connection)}, {membership.column(connection, 'role')}, "
        f"{_waiting_ahead_sql(connection)}, {images.select(connection)} "
        f"FROM {CARD_JOB.table(connection)} "
        f"JOIN {CARD_PROJECT.table(connection)} ON {CARD_PROJECT.column(connection, 'id')} = "
        f"{CARD_JOB.column(connection, 'project')} "
        f"JOIN {CARD_AUTHOR.table(connection)} ON {CARD_AUTHOR.column(connection, User._meta.pk.name)} = "
        f"{CARD_JOB.column(connection, 'author')} "
        # One membership per (project, user) at most: a constraint guarantees it.
        f"LEFT JOIN {membership.table(connection)} ON {membership.column(connection, 'project')} = "
        f"{CARD_JOB.column(connection, 'project')} AND {membership.column(connection, 'user')} = %s "
        # Only a succeeded card shows images: one row per visible image, or one row without any.
        f"LEFT JOIN {images.table(connection)} ON {images.column(connection, 'job')} = "
        f"{CARD_JOB.column(connection, 'id')} AND {CARD_JOB.column(connection, 'status')} = %s "
        f"AND {images.column(connection, 'deleted_at')} IS NULL "
        f"WHERE {CARD_JOB.column(connection, 'id')} = %s AND {CARD_JOB.column(connection, 'project')} = %s "
        f"ORDER BY {images.column(connection, 'index')}"
    )


def job_card(*, viewer_id: int, project_id: int, job_id: int) -> tuple[Job, str | None, list[Image]] | None:
    """The job in that project, with its project and author; the viewer's role in the project (None
    when not a member); and, once the job has succeeded, its visible images in order. None when there
    is no such job in that project."""
    waiting = [Job.Status.QUEUED.value, Job.Status.QUEUED.value, Job.Status.RETRYING.value]
    params = [*waiting, viewer_id, Job.Status.SUCCEEDED.value, job_id, project_id]
    connection, rows = _fetch(Job, _job_card_sql, params)
    if not rows:
        return None
    first = rows[0]
    project_starts = len(CARD_JOB)
    author_starts = project_starts + len(CARD_PROJECT)
    role_at = author_starts + len(CARD_AUTHOR)
    job = CARD_JOB.load(connection, first[:project_starts])
    job.project = CARD_PROJECT.load(connection, first[project_starts:author_starts])
    job.author = CARD_AUTHOR.load(connection, first[author_starts:role_at])
    job.waiting_behind = first[role_at + 1]  # the card's "waiting behind 3 of your jobs", in the same query
    image_id_at = role_at + 2 + CARD_IMAGES.attnames.index("id")
    images = [
        CARD_IMAGES.load(connection, row[role_at + 2 :]) for row in rows if row[image_id_at] is not None
    ]
    return job, first[role_at], images


# -- A token's own monthly limit, checked under the token's lock on every job a limited token creates ----


def _token_used_sql(connection: BaseDatabaseWrapper) -> str:
    """The month's charges of the token's jobs and what its unfinished jobs hold, as one row."""
    quote = connection.ops.quote_name

    def column(model: type[Model], name: str) -> str:
        return quote(model._meta.get_field(name).column)

    ledger, job, link = (quote(model._meta.db_table) for model in (LedgerEntry, Job, ApiTokenJob))
    token, linked_job = column(ApiTokenJob, "token"), column(ApiTokenJob, "job")
    return (
        f"SELECT (SELECT COALESCE(SUM(l.{column(LedgerEntry, 'cost')}), 0) FROM {ledger} l "
        f"JOIN {link} t ON t.{linked_job} = l.{column(LedgerEntry, 'job')} "
        f"WHERE t.{token} = %s AND l.{column(LedgerEntry, 'created_at')} >= %s "
        f"AND l.{column(LedgerEntry, 'simulated')} = %s), "
        f"(SELECT COALESCE(SUM(j.{column(Job, 'reserved_cost')}), 0) FROM {job} j "
        f"JOIN {link} t ON t.{linked_job} = j.{column(Job, 'id')} "
        f"WHERE t.{token} = %s AND j.{column(Job, 'reserved_cost')} > 0)"
    )


def token_used(*, token_id: int, since: datetime, simulated: bool) -> tuple[Decimal, Decimal]:
    """What workspace.api.tokens.token_used adds up: (spent since `since` in this mode, held), summed
    in one statement (the same snapshot) instead of two ORM aggregates."""
    connection = connections[router.db_for_read(LedgerEntry)]
    since_value = connection.ops.adapt_datetimefield_value(since)
    _, rows = _fetch(LedgerEntry, _token_used_sql, [token_id, since_value, simulated, token_id])
    spent, held = rows[0]
    return _money(spent), _money(held)


# -- The budgets a job is held against, locked and summed on every job created ------------------------

BUDGET = Columns(Budget, "b", ("id", "user", "project", "monthly_limit"))


def _budgets_lock_sql(connection: BaseDatabaseWrapper) -> str:
    user, project, pk = (BUDGET.column(connection, name) for name in ("user", "project", "id"))
    # In one global order (user rows first: NULLs sort last), so two submits never wait crosswise.
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    return (
        f"SELECT {BUDGET.select(connection)} FROM {BUDGET.table(connection)} "
        f"WHERE {user} = %s OR {project} = %s OR ({user} IS NULL AND {project} IS NULL) "
        f"ORDER BY {user}, {pk}{lock}"
    )


def budgets_lock(*, user_id: int, project_id: int) -> list[Budget]:
    """The user's, the project's and the workspace's budget rows that exist, locked (FOR UPDATE) in
    workspace.spend.reserve's order: what `Budget.objects.select_for_update()` with those filters gives."""
    connection, rows = _fetch(Budget, _budgets_lock_sql, [user_id, project_id])
    return [BUDGET.load(connection, row) for row in rows]


def budgets_used(budgets: Sequence[Budget], *, since: datetime, simulated: bool) -> list[Decimal]:
    """For each budget, what workspace.spend.budget_used adds up (its scope's charges since `since` in
    this mode, plus what its scope's unfinished jobs hold), all in one statement."""
    connection = connections[router.db_for_read(LedgerEntry)]
    quote = connection.ops.quote_name

    def column(model: type[Model], name: str) -> str:
        return quote(model._meta.get_field(name).column)

    ledger, job = quote(LedgerEntry._meta.db_table), quote(Job._meta.db_table)
    cost, reserved = column(LedgerEntry, "cost"), column(Job, "reserved_cost")
    since_value = connection.ops.adapt_datetimefield_value(since)
    sums, params = [], []
    for budget in budgets:
        if budget.user_id is not None:
            spent_scope, held_scope, scope = (
                f"l.{column(LedgerEntry, 'user')} = %s AND ",
                f"j.{column(Job, 'author')} = %s AND ",
                [budget.user_id],
            )
        elif budget.project_id is not None:
            spent_scope, held_scope, scope = (
                f"l.{column(LedgerEntry, 'project')} = %s AND ",
                f"j.{column(Job, 'project')} = %s AND ",
                [budget.project_id],
            )
        else:  # the workspace's: everyone's
            spent_scope, held_scope, scope = "", "", []
        sums.append(
            f"(SELECT COALESCE(SUM(l.{cost}), 0) FROM {ledger} l WHERE {spent_scope}"
            f"l.{column(LedgerEntry, 'created_at')} >= %s AND l.{column(LedgerEntry, 'simulated')} = %s) + "
            f"(SELECT COALESCE(SUM(j.{reserved}), 0) FROM {job} j WHERE {held_scope}j.{reserved} > 0)"
        )
        params += [*scope, since_value, simulated, *scope]
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + ", ".join(sums), params)
        row = cursor.fetchone()
    return [_money(value) for value in row]


def _money(value: Any) -> Decimal:
    # SQLite (`make run`) sums decimals as floats: back to the micro-dollars the columns hold.
    return value if isinstance(value, Decimal) else Decimal(str(value)).quantize(MICRO_DOLLAR)


# -- The API's bearer token, on every API request; its lock, on every job a limited token creates ------

TOKEN = Columns(ApiToken, "t", [field.name for field in ApiToken._meta.concrete_fields])
TOKEN_OWNER = Columns(User, "u", [field.name for field in User._meta.concrete_fields])
TOKEN_LIMIT = Columns(ApiToken, "t", ("id", "name", "monthly_limit"))


def _token_sql(connection: BaseDatabaseWrapper) -> str:
    return (
        f"SELECT {TOKEN.select(connection)}, {TOKEN_OWNER.select(connection)} FROM {TOKEN.table(connection)} "
        f"JOIN {TOKEN_OWNER.table(connection)} ON {TOKEN_OWNER.column(connection, User._meta.pk.name)} = "
        f"{TOKEN.column(connection, 'user')} WHERE {TOKEN.column(connection, 'key_hash')} = %s"
    )


def token_by_hash(key_hash: str) -> ApiToken | None:
    """What `ApiToken.objects.select_related("user").filter(key_hash=…).first()` returns (the hash is
    unique), with its owner loaded."""
    connection, rows = _fetch(ApiToken, _token_sql, [key_hash])
    if not rows:
        return None
    token = TOKEN.load(connection, rows[0][: len(TOKEN)])
    token.user = TOKEN_OWNER.load(connection, rows[0][len(TOKEN) :])
    return token


def _token_lock_sql(connection: BaseDatabaseWrapper) -> str:
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    return (
        f"SELECT {TOKEN_LIMIT.select(connection)} FROM {TOKEN_LIMIT.table(connection)} "
        f"WHERE {TOKEN_LIMIT.column(connection, 'id')} = %s{lock}"
    )


def token_lock(token_id: int) -> ApiToken | None:
    """The token's row locked (FOR UPDATE) until the transaction ends, with its name and current limit."""
    connection, rows = _fetch(ApiToken, _token_lock_sql, [token_id])
    return TOKEN_LIMIT.load(connection, rows[0]) if rows else None
