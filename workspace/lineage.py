"""Which image came from which: parents, children, ancestry, descendants and the whole family.

An output's parents are its job's inputs (earlier outputs or uploaded references). Ancestry and
descendants are one query each whatever the depth: a recursive CTE over image ids only, so UNION
(not UNION ALL) drops an image already reached and each image is visited once, however many paths of
however many lengths lead to it. (Carrying the depth in the CTE's rows made (image, depth) the unit of
work: a "ladder" of edits, each made from the two before it, reaches image k at every depth up to k,
and 4,000 steps made millions of rows.) The same query returns each image's own image inputs, from
which `_depths` computes the nearest depth in Python, a breadth-first walk over rows already fetched.
Postgres and SQLite both run WITH RECURSIVE with these UNION semantics.
"""

import difflib
from collections import deque
from dataclasses import dataclass, field

from workspace.models import Image, Job, JobInput, Reference

_IMAGE = Image._meta.db_table
_INPUT = JobInput._meta.db_table
_JOB = Job._meta.db_table

# Table names come from the models, values are always parameters. The start images are part of the
# walk (so their own inputs come back for the depths) and left out of the answer.
ANCESTORS_CTE = f"""
WITH RECURSIVE walk(image_id) AS (
    SELECT id FROM {_IMAGE} WHERE id IN ({{seeds}})
    UNION
    SELECT ji.image_id
      FROM walk w
      JOIN {_IMAGE} img ON img.id = w.image_id
      JOIN {_INPUT} ji ON ji.job_id = img.job_id
     WHERE ji.image_id IS NOT NULL
)"""

DESCENDANTS_CTE = f"""
WITH RECURSIVE walk(image_id) AS (
    SELECT id FROM {_IMAGE} WHERE id IN ({{seeds}})
    UNION
    SELECT child.id
      FROM walk w
      JOIN {_INPUT} ji ON ji.image_id = w.image_id
      JOIN {_IMAGE} child ON child.job_id = ji.job_id
)"""

# One row per (image, image input), or one with a NULL input: a few rows per image, never per path.
WALKED_IMAGES = f"""
SELECT img.*, ji.image_id AS input_image_id
  FROM walk w
  JOIN {_IMAGE} img ON img.id = w.image_id
  LEFT JOIN {_INPUT} ji ON ji.job_id = img.job_id AND ji.image_id IS NOT NULL
 ORDER BY img.id
"""


def _walk(cte: str, seeds: list[int]) -> dict[int, tuple[Image, list[int]]]:
    """Every image the CTE reaches from the seeds (seeds included), each with its image inputs."""
    sql = cte.format(seeds=", ".join(["%s"] * len(seeds))) + WALKED_IMAGES
    found: dict[int, tuple[Image, list[int]]] = {}
    for row in Image.objects.raw(sql, seeds):
        _, inputs = found.setdefault(row.pk, (row, []))
        if row.input_image_id is not None:
            inputs.append(row.input_image_id)
    return found


def _depths(seeds: list[int], edges: dict[int, list[int]]) -> dict[int, int]:
    """Breadth-first from the seeds along `edges`: each image's nearest distance from any seed."""
    depth = dict.fromkeys(seeds, 0)
    queue = deque(seeds)
    while queue:
        here = queue.popleft()
        for there in edges.get(here, ()):
            if there not in depth:
                depth[there] = depth[here] + 1
                queue.append(there)
    return depth


def _answer(
    found: dict[int, tuple[Image, list[int]]], depth: dict[int, int], seeds: list[int]
) -> list[Image]:
    images = []
    for pk, (image, _) in found.items():
        if pk in depth and pk not in seeds:
            image.depth = depth[pk]
            images.append(image)
    return sorted(images, key=lambda image: (image.depth, image.pk))


def ancestors(image: Image) -> list[Image]:
    """Every earlier output this image was made from, nearest first (each with `.depth`)."""
    found = _walk(ANCESTORS_CTE, [image.pk])
    parents_of = {pk: inputs for pk, (_, inputs) in found.items()}
    return _answer(found, _depths([image.pk], parents_of), [image.pk])


def descendants(*images: Image) -> list[Image]:
    """Every later output made from these images, directly or not (each with `.depth`, from the nearest
    of them). The images themselves are not in the answer."""
    if not images:
        return []
    seeds = [image.pk for image in images]
    found = _walk(DESCENDANTS_CTE, seeds)
    children_of: dict[int, list[int]] = {}
    for pk, (_, inputs) in found.items():
        for parent in inputs:
            children_of.setdefault(parent, []).append(pk)
    return _answer(found, _depths(seeds, children_of), seeds)


def parents(image: Image) -> list[JobInput]:
    return list(
        JobInput.objects.filter(job_id=image.job_id).select_related("image", "reference").order_by("position")
    )


def children(image: Image) -> list[Image]:
    return list(
        Image.objects.filter(job__inputs__image=image).select_related("job").order_by("id").distinct()
    )


@dataclass
class Node:
    image: Image
    children: list["Node"] = field(default_factory=list)
    also_from: list[int] = field(default_factory=list)
    # The edit that made it was guided by a markup (circles, arrows, labels), shown beside it.
    markup: bool = False


@dataclass
class Family:
    roots: list[Node]
    references: list[Reference]
    size: int
    generations: int

    def rows(self) -> list[tuple[Node, int]]:
        """The tree in reading order with each node's depth, walked without recursion (deep families)."""
        rows: list[tuple[Node, int]] = []
        stack = [(root, 0) for root in reversed(self.roots)]
        while stack:
            node, depth = stack.pop()
            rows.append((node, depth))
            stack.extend((child, depth + 1) for child in reversed(node.children))
        return rows


def family(image: Image) -> Family:
    """The whole tree this image belongs to, from its roots to the newest descendants.

    Three queries whatever the depth: ancestors, descendants of the roots, and the inputs that link
    them (for drawing). An image with several image inputs hangs under its first; the others are noted.
    """
    earlier = ancestors(image)
    candidates = [*earlier, image]
    later = descendants(*candidates)
    members = {img.pk: img for img in [*candidates, *later]}
    # An edit's markup comes along on its inputs' rows (only edits have one, and every edit has inputs).
    links = list(
        JobInput.objects.filter(job_id__in={img.job_id for img in members.values()}).values_list(
            "job_id", "position", "image_id", "reference_id", "job__markup"
        )
    )
    image_inputs: dict[int, list[int]] = {}
    reference_ids: set[int] = set()
    marked = {link[0] for link in links if link[4]}
    for job_id, _position, image_id, reference_id, _markup in sorted(
        links, key=lambda link: (link[0], link[1])
    ):
        if image_id is not None:
            image_inputs.setdefault(job_id, []).append(image_id)
        else:
            reference_ids.add(reference_id)
    nodes = {pk: Node(img, markup=img.job_id in marked) for pk, img in sorted(members.items())}
    roots: list[Node] = []
    for node in nodes.values():
        inputs = [parent for parent in image_inputs.get(node.image.job_id, []) if parent in nodes]
        if not inputs:
            roots.append(node)
            continue
        nodes[inputs[0]].children.append(node)
        node.also_from = inputs[1:]
    references = list(Reference.objects.filter(pk__in=reference_ids).order_by("id")) if reference_ids else []
    tree = Family(roots=roots, references=references, size=len(nodes), generations=0)
    # Counted on the drawn tree: the CTE's depths are relative to whichever seed reached an image first.
    # Uploaded references, the family's roots, are a generation of their own.
    tree.generations = 1 + max((level for _, level in tree.rows()), default=0) + (1 if references else 0)
    return tree


@dataclass(frozen=True)
class Change:
    name: str
    before: str
    after: str


def prompt_diff(before: str, after: str) -> list[tuple[str, str]]:
    """Word-level diff as (kind, text) pairs: kind is 'same', 'added' or 'removed'."""
    old, new = before.split(), after.split()
    pieces: list[tuple[str, str]] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
        if tag == "equal":
            pieces.append(("same", " ".join(old[i1:i2])))
            continue
        if i2 > i1:
            pieces.append(("removed", " ".join(old[i1:i2])))
        if j2 > j1:
            pieces.append(("added", " ".join(new[j1:j2])))
    return pieces


# The preset is only the form's name for a size, which is compared itself.
COMPARED = [name for name in Job.REQUEST_FIELDS if name != "size_preset"]


def parameter_changes(parent_job: Job, child_job: Job) -> list[Change]:
    changes = []
    for name in COMPARED:
        before, after = getattr(parent_job, name), getattr(child_job, name)
        if before in (None, "") and after in (None, ""):
            continue  # GIF and SVG settings neither job sent
        if before != after:
            changes.append(
                Change(name, str(before) if before != "" else "–", str(after) if after != "" else "–")
            )
    if child_job.kind != parent_job.kind:
        changes.append(Change("kind", parent_job.get_kind_display(), child_job.get_kind_display()))
    if child_job.mask and not parent_job.mask:
        changes.append(Change("mask", "none", "painted area"))
    if child_job.markup and not parent_job.markup:
        changes.append(Change("markup", "none", "drawn guides"))
    return changes
