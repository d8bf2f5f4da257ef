"""Catalog batches: one job per CSV row, every row checked before anything is queued.

A CSV has a header naming its columns: the template's variables, and optionally `reference`, a
library reference's name (this project's) whose image the row's job edits (unless the template has
a {reference} variable: then that column fills it, as any variable's does). Checked, all of it, before
anything is written: the file is UTF-8 text with a header and at most MAX_ROWS rows; no cell starts
with a formula character (=, +, -, @, a tab or a carriage return: spreadsheets would run it when the
file is opened again); every column is a variable of the template or `reference`, every variable has
a column and every row a value for each; every reference is in this project's library; no row
repeats another; no prompt is too long once filled in. Each problem is reported by row number (the
header is row 1, as a spreadsheet counts) and column, and nothing is queued or reserved.

A valid file becomes a draft campaign holding its rows (`batch_draft`): the preview and the confirm
read them from the database, so what is queued is what was checked, whatever the browser re-posts.
`batch_confirm` then reserves the whole batch in one step and queues it (campaigns.campaign_jobs_create).
"""

import codecs
import csv
import io
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings

from workspace import campaigns, prompting
from workspace.campaign_models import BrandKitVersion, Campaign, TemplateVersion
from workspace.edits import EditRefused
from workspace.models import Project, Reference

MAX_ROWS = 100_000
REFERENCE_COLUMN = "reference"
FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r")
LEAD_NAMES = {"\t": "a tab", "\r": "a carriage return"}  # the others are shown as they are
# A page of problems is enough to fix a file; the rest are counted.
MAX_PROBLEMS_SHOWN = 200
PREVIEW_ROWS = 5


@dataclass(frozen=True)
class Problem:
    row: int | None  # 1 is the header; None: the whole file
    column: str  # "" when it is not one column's
    message: str


class BatchRefused(ValueError):
    """The file has problems: `problems` (the first MAX_PROBLEMS_SHOWN) and how many in all."""

    def __init__(self, problems: list[Problem], total: int | None = None) -> None:
        self.problems = problems[:MAX_PROBLEMS_SHOWN]
        self.total = total if total is not None else len(problems)
        first = problems[0]
        where = f"Row {first.row}" if first.row else "The file"
        where += f", column “{first.column}”" if first.column else ""
        super().__init__(f"{where}: {first.message}")


@dataclass
class Row:
    number: int  # as a spreadsheet counts: the header is 1, the first item 2
    values: dict[str, str]
    reference_id: int | None = None


@dataclass
class Checked:
    """A file that passed: its columns and rows, and the jobs they make (prompt, parameters, cost)."""

    columns: list[str]
    rows: list[Row]
    specs: list[campaigns.JobSpec] = field(default_factory=list)

    @property
    def total(self) -> Decimal:
        return sum((spec.cost for spec in self.specs), start=Decimal(0))


UTF16 = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
UTF16_MESSAGE = (
    "this file is UTF-16 text (a spreadsheet's “Unicode text”), not UTF-8. Save it as “CSV UTF-8” "
    "and upload it again."
)


def _looks_utf16(data: bytes) -> bool:
    """A byte-order mark, or ASCII text with every other byte zero (UTF-16 without a mark)."""
    head = data[:200]
    if head.startswith(UTF16):
        return True
    even, odd = head[0::2].count(0), head[1::2].count(0)
    return len(head) >= 4 and min(even, odd) == 0 and max(even, odd) >= 0.9 * (len(head) // 2)


def _decode(data: bytes) -> str:
    if _looks_utf16(data):
        raise BatchRefused([Problem(None, "", UTF16_MESSAGE)])
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        row = data[: error.start].count(b"\n") + 1
        raise BatchRefused(
            [
                Problem(
                    row,
                    "",
                    f"this is not UTF-8 text (byte {error.start + 1} cannot be read). Save the file as "
                    "“CSV UTF-8” and upload it again.",
                )
            ]
        ) from None


def read_rows(*, data: bytes, variables: list[str]) -> tuple[list[str], list[Row], list[Problem]]:
    """The header and rows of a CSV, and the problems of its shape and cells (no database)."""
    text = _decode(data)
    if "\x00" in text:
        raise BatchRefused([Problem(None, "", "this is not a CSV file (it holds binary data).")])
    # Strict: a quote never closed would otherwise swallow every later row into one cell, silently.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as error:
        raise BatchRefused([Problem(1, "", f"the header cannot be read ({error}).")]) from None
    known = set(variables) | {REFERENCE_COLUMN}
    header = [cell.strip() for cell in header or []]
    optional = [] if REFERENCE_COLUMN in variables else [f"{REFERENCE_COLUMN} (optional)"]
    expected = ", ".join([*variables, *optional])
    if not any(header) or not known & set(header):
        raise BatchRefused(
            [
                Problem(
                    1,
                    "",
                    f"the file has no header. Its first line must name the columns: {expected}.",
                )
            ]
        )
    problems: list[Problem] = []
    seen_columns: set[str] = set()
    by_case = {name.lower(): name for name in known}
    for position, cell in enumerate(header, start=1):
        if not cell:
            # Often a spreadsheet's stray empty column (a trailing comma on every line).
            problems.append(
                Problem(
                    1,
                    f"column {position}",
                    f"this column has no name in the header. Name it ({expected}) or delete the column.",
                )
            )
        elif cell not in known:
            hint = (
                f" (names are case-sensitive: “{by_case[cell.lower()]}”?)" if cell.lower() in by_case else ""
            )
            problems.append(
                Problem(1, cell, f"the template has no variable “{cell}”{hint}. The columns are: {expected}.")
            )
        elif cell in seen_columns:
            problems.append(Problem(1, cell, "this column appears twice."))
        seen_columns.add(cell)
    for name in variables:
        if name not in header:
            problems.append(Problem(1, name, f"the column for the variable {{{name}}} is missing."))
    if problems:
        raise BatchRefused(problems)
    rows: list[Row] = []
    number = 1
    try:
        for number, cells in enumerate(reader, start=2):
            if number - 1 > MAX_ROWS:
                raise BatchRefused(
                    [
                        Problem(
                            number,
                            "",
                            f"the file has more than {MAX_ROWS:,} rows; split it into batches of at most "
                            f"{MAX_ROWS:,}.",
                        )
                    ]
                )
            if not any(cell.strip() for cell in cells):
                continue  # a blank line (spreadsheets often end with one)
            if len(cells) != len(header):
                problems.append(
                    Problem(number, "", f"this row has {len(cells)} cells; the header has {len(header)}.")
                )
                continue
            values = {}
            for column, cell in zip(header, cells, strict=True):
                value = cell.strip()
                # The raw cell for a leading tab or CR, the stripped one because that is what is kept
                # (" =X" would be stored, queued and exported as "=X").
                lead = next((text[0] for text in (cell, value) if text.startswith(FORMULA_LEADS)), None)
                if lead is not None:
                    shown = LEAD_NAMES.get(lead, f"“{lead}”")
                    problems.append(
                        Problem(
                            number,
                            column,
                            f"“{value[:40]}” starts with {shown}, which a spreadsheet would run as a "
                            "formula. Remove that first character (or put the text in words).",
                        )
                    )
                values[column] = value
            for name in variables:
                if not values.get(name):
                    problems.append(Problem(number, name, f"{{{name}}} has no value."))
            rows.append(Row(number=number, values=values))
    except csv.Error as error:
        # Rows are counted as records (a quoted cell may hold line breaks), as everywhere else here.
        if "unexpected end of data" in str(error):
            message = (
                'a quote (") opened in this row is never closed, so the rest of the file would be one '
                'cell. Close the quote, or double a quote that is part of the text ("").'
            )
        else:
            message = (
                f"this row cannot be read ({error}). Put a cell that holds quotes in quotes, and double "
                'the quotes inside it ("").'
            )
        problems.append(Problem(number + 1, "", message))
        raise BatchRefused(problems) from None
    if not rows and not problems:
        raise BatchRefused([Problem(2, "", "the file has a header but no rows.")])
    return header, rows, problems


def _references(project: Project, rows: list[Row], problems: list[Problem]) -> None:
    """Resolve each row's reference by name within this project's library, in one query."""
    names = {row.values.get(REFERENCE_COLUMN) for row in rows} - {None, ""}
    if not names:
        return
    found: dict[str, int] = {}
    # Newest first: of two references with one name, a row means the one uploaded last.
    for pk, name in (
        Reference.objects.in_library()
        .filter(project=project, name__in=names)
        .order_by("created_at", "id")
        .values_list("pk", "name")
    ):
        found[name] = pk
    for row in rows:
        name = row.values.get(REFERENCE_COLUMN)
        if not name:
            continue
        if name not in found:
            # The same words whether the name exists elsewhere or nowhere: another project's library
            # is not ours to confirm.
            problems.append(
                Problem(
                    row.number,
                    REFERENCE_COLUMN,
                    f"there is no reference named “{name[:80]}” in this project's library (upload it to "
                    "the Library first; other projects' references cannot be used).",
                )
            )
        else:
            row.reference_id = found[name]


def _duplicates(rows: list[Row], problems: list[Problem]) -> None:
    first: dict[tuple, int] = {}
    for row in rows:
        key = tuple(sorted(row.values.items()))
        if key in first:
            problems.append(Problem(row.number, "", f"this row repeats row {first[key]}."))
        else:
            first[key] = row.number


def batch_check(
    *,
    project: Project,
    template_version: TemplateVersion,
    brand_kit_version: BrandKitVersion | None,
    data: bytes,
    base: dict,
    overnight: bool = False,
) -> Checked:
    """Every row checked and turned into a job spec, or BatchRefused listing the problems.

    A fixed number of queries however many rows: the references in one, the parameters checked by
    the Studio's form once per kind (generation, or edit when a row has a reference), the price
    table once per prompt length (campaigns.EstimateCache).
    """
    header, rows, problems = read_rows(data=data, variables=list(template_version.variables))
    return _check_rows(
        project=project,
        template_version=template_version,
        brand_kit_version=brand_kit_version,
        header=header,
        rows=rows,
        problems=problems,
        base=base,
        overnight=overnight,
    )


def _check_rows(
    *,
    project: Project,
    template_version: TemplateVersion,
    brand_kit_version: BrandKitVersion | None,
    header: list[str],
    rows: list[Row],
    problems: list[Problem],
    base: dict,
    overnight: bool,
) -> Checked:
    """batch_check's work once the rows are read: references, duplicates, prompts, parameters, costs."""
    variables = list(template_version.variables)
    # A template with a {reference} variable fills it from that column: its rows name no images.
    if REFERENCE_COLUMN not in variables:
        _references(project, rows, problems)
    _duplicates(rows, problems)
    try:
        shared = campaigns.inputs_for(template_version=template_version, brand_kit_version=brand_kit_version)
    except EditRefused as refusal:
        raise BatchRefused([Problem(None, "", str(refusal))]) from refusal
    kit = campaigns.kit_for(template_version=template_version, brand_kit_version=brand_kit_version)
    estimates = campaigns.EstimateCache(
        Campaign(project=project, kind=Campaign.Kind.BATCH, overnight=overnight)
    )
    references = {
        ref.pk: ref for ref in Reference.objects.filter(pk__in={row.reference_id for row in rows} - {None})
    }
    params_by_kind: dict[bool, dict] = {}
    specs = []
    failed = {problem.row for problem in problems}
    for row in rows:
        if row.number in failed:
            continue
        values = {name: row.values[name] for name in variables}
        try:
            prompt = prompting.prompt_for(template_version=template_version, values=values, kit_version=kit)
        except prompting.TemplateProblem as problem:
            longest = max(variables, key=lambda name: len(values[name])) if variables else ""
            problems.append(
                Problem(row.number, longest, f"{problem.message} The longest value is this column's.")
            )
            continue
        own = references.get(row.reference_id) if row.reference_id else None
        inputs = ([own] if own else []) + [ref for ref in shared if ref != own]
        if len(inputs) > settings.MAX_EDIT_INPUTS:
            problems.append(
                Problem(
                    row.number,
                    REFERENCE_COLUMN,
                    f"with the template's references this row has {len(inputs)} inputs; at most "
                    f"{settings.MAX_EDIT_INPUTS}.",
                )
            )
            continue
        is_edit = bool(inputs)
        if is_edit not in params_by_kind:
            try:
                params_by_kind[is_edit] = campaigns.job_params_for(
                    template_version=template_version,
                    values=values,
                    overrides=base,
                    brand_kit_version=brand_kit_version,
                    extra_inputs=1 if own else 0,
                )
            except campaigns.ParamsProblem as problem:
                raise BatchRefused([Problem(None, "", f"The batch's settings: {problem}")]) from problem
        params = params_by_kind[is_edit]
        specs.append(
            campaigns.JobSpec(
                prompt=prompt,
                params=params,
                cost=estimates.cost(prompt=prompt, params=params, input_images=len(inputs)),
                inputs=inputs,
                variables=values,
                row=row.number,
            )
        )
    if problems:
        problems.sort(key=lambda problem: (problem.row or 0, problem.column))
        raise BatchRefused(problems)
    return Checked(columns=header, rows=rows, specs=specs)


def batch_draft(
    *,
    project: Project,
    author,
    name: str,
    source_name: str,
    template_version: TemplateVersion,
    brand_kit_version: BrandKitVersion | None,
    data: bytes,
    base: dict,
    key_column: str = "",
    overnight: bool = False,
) -> tuple[Campaign, Checked]:
    """Check the file and keep it as a draft campaign (nothing queued, nothing reserved).

    Raises BatchRefused.
    """
    checked = batch_check(
        project=project,
        template_version=template_version,
        brand_kit_version=brand_kit_version,
        data=data,
        base=base,
        overnight=overnight,
    )
    if key_column and key_column not in checked.columns:
        raise BatchRefused([Problem(1, key_column, "the file has no such column to name the files by.")])
    campaign = Campaign.objects.create(
        project=project,
        author=author,
        kind=Campaign.Kind.BATCH,
        name=name,
        status=Campaign.Status.DRAFT,
        template_version=template_version,
        brand_kit_version=campaigns.kit_for(
            template_version=template_version, brand_kit_version=brand_kit_version
        ),
        base_params=base,
        key_column=key_column,
        overnight=overnight,
        columns=checked.columns,
        source_name=source_name[:255],
        estimated_cost=checked.total,
        rows=[
            {"row": row.number, "values": row.values, "reference_id": row.reference_id}
            for row in checked.rows
        ],
    )
    return campaign, checked


def draft_specs(campaign: Campaign) -> list[campaigns.JobSpec]:
    """The draft's rows as jobs again, checked again against what the database holds now (a
    reference removed, a price changed since the preview). Raises BatchRefused."""
    # The rows keep the numbers they had in the file (blank lines skipped there still count), so
    # each job's row and any problem found now name the row the preview showed.
    rows = [Row(number=row["row"], values=row["values"]) for row in campaign.rows]
    return _check_rows(
        project=campaign.project,
        template_version=campaign.template_version,
        brand_kit_version=campaign.brand_kit_version,
        header=list(campaign.columns),
        rows=rows,
        problems=[],
        base=campaign.base_params,
        overnight=campaign.overnight,
    ).specs


def batch_confirm(*, campaign: Campaign, author, key_column: str | None = None) -> Campaign:
    """Queue a draft: every row a job in the bulk lane, the whole estimate reserved in one step.

    Raises spend.BudgetExceeded (the draft stays a draft, nothing queued), BatchRefused, ValueError
    (no longer a draft).
    """
    if key_column is not None:
        if key_column and key_column not in campaign.columns:
            raise BatchRefused([Problem(1, key_column, "the file has no such column to name the files by.")])
        campaign.key_column = key_column
        Campaign.objects.filter(pk=campaign.pk).update(key_column=key_column)
    specs = draft_specs(campaign)
    campaigns.campaign_jobs_create(campaign=campaign, author=author, specs=specs)
    return campaign


def preview(campaign: Campaign, checked: Checked | None = None) -> list[dict]:
    """The first rows' exact prompts, for the draft's page."""
    kit = campaign.brand_kit_version
    shown = []
    for row in campaign.rows[:PREVIEW_ROWS]:
        values = {name: row["values"].get(name, "") for name in campaign.template_version.variables}
        shown.append(
            {
                "row": row["row"],
                "values": row["values"],
                "prompt": prompting.prompt_for(
                    template_version=campaign.template_version, values=values, kit_version=kit
                ),
            }
        )
    return shown
