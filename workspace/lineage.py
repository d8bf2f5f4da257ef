"""Which image came from which: parents, children, ancestry, descendants and the whole family.

An output's parents are its job's inputs (earlier outputs or uploaded references). Ancestry and
descendants are one recursive CTE each, so depth costs no extra queries. Both Postgres and SQLite run
WITH RECURSIVE; UNION (not UNION ALL) stops at images already reached, so a diamond is visited once.
"""

import difflib
from dataclasses import dataclass, field

from workspace.models import Image, Job, JobInput, Reference

_IMAGE = Image._meta.db_table
_INPUT = JobInput._meta.db_table
_JOB = Job._meta.db_table

# Table names come from the models, values are always parameters.
ANCESTORS_SQL = f"""
WITH RECURSIVE ancestors(image_id, depth) AS (
    SELECT ji.image_id, 1
      FROM {_IMAGE} start JOIN {_INPUT} ji ON ji.job_id = start.job_id
     WHERE start.id = %s AND ji.image_id IS NOT NULL
    UNION
    SELECT ji.image_id, a.depth + 1
      FROM ancestors a
      JOIN {_IMAGE} parent ON parent.id = a.image_id
      JOIN {_INPUT} ji ON ji.job_id = parent.job_id
     WHERE ji.image_id IS NOT NULL AND a.depth < %s
)
SELECT img.*, MIN(a.depth) AS depth
  FROM ancestors a JOIN {_IMAGE} img ON img.id = a.image_id
 GROUP BY img.id
 ORDER BY depth, img.id
"""

DESCENDANTS_SQL = f"""
WITH RECURSIVE descendants(image_id, depth) AS (
    SELECT child.id, 1
      FROM {_INPUT} ji JOIN {_IMAGE} child ON child.job_id = ji.job_id
     WHERE ji.image_id IN ({{seeds}})
    UNION
    SELECT child.id, d.depth + 1
      FROM descendants d
      JOIN {_INPUT} ji ON ji.image_id = d.image_id
      JOIN {_IMAGE} child ON child.job_id = ji.job_id
     WHERE d.depth < %s
)
SELECT img.*, MIN(d.depth) AS depth
  FROM descendants d JOIN {_IMAGE} img ON img.id = d.image_id
 GROUP BY img.id
 ORDER BY depth, img.id
"""

# Far deeper than any real family; bounds the recursion if data were ever cyclic.
MAX_DEPTH = 10_000


def ancestors(image: Image) -> list[Image]:
    """Every earlier output this image was made from, nearest first (each with `.depth`)."""
    return list(Image.objects.raw(ANCESTORS_SQL, [image.pk, MAX_DEPTH]))


def descendants(*images: Image) -> list[Image]:
    """Every later output made from these images, directly or not (each with `.depth`)."""
    if not images:
        return []
    seeds = ", ".join(["%s"] * len(images))
    sql = DESCENDANTS_SQL.format(seeds=seeds)
    return list(Image.objects.raw(sql, [*[image.pk for image in images], MAX_DEPTH]))


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
    links = list(
        JobInput.objects.filter(job_id__in={img.job_id for img in members.values()}).values_list(
            "job_id", "position", "image_id", "reference_id"
        )
    )
    image_inputs: dict[int, list[int]] = {}
    reference_ids: set[int] = set()
    for job_id, _position, image_id, reference_id in sorted(links, key=lambda link: (link[0], link[1])):
        if image_id is not None:
            image_inputs.setdefault(job_id, []).append(image_id)
        else:
            reference_ids.add(reference_id)
    nodes = {pk: Node(img) for pk, img in sorted(members.items())}
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
        if before != after:
            changes.append(
                Change(name, str(before) if before != "" else "–", str(after) if after != "" else "–")
            )
    if child_job.kind != parent_job.kind:
        changes.append(Change("kind", parent_job.get_kind_display(), child_job.get_kind_display()))
    if child_job.mask and not parent_job.mask:
        changes.append(Change("mask", "none", "painted area"))
    return changes
