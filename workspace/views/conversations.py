"""Conversations about one image (workspace.conversations) and content credential checks of photos."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from workspace import conversations, jobs, provenance, spend
from workspace.access import object_access, project_access
from workspace.forms import CredentialCheckForm, TurnForm
from workspace.models import Conversation, Image, Role, Turn

PAGE = "workspace/conversation.html"


def _thread(request: HttpRequest, project_id: int, conversation_id: int, *, writes: bool = False):
    if writes:
        # The role first, as every write does: staff outside the project are refused (403) before
        # anyone looks for the thread.
        access = project_access(request.user, project_id, needs=Role.EDITOR, writes=True)
        queryset = Conversation.objects.select_related("root_image", "branched_from")
        return access, get_object_or_404(queryset, project=access.project, pk=conversation_id)
    return object_access(
        request.user,
        Conversation.objects.select_related("root_image", "branched_from"),
        project_id=project_id,
        pk=conversation_id,
    )


def _context(access, conversation: Conversation, form: TurnForm | None = None, problem: str = "") -> dict:
    turns = list(
        conversation.turns.select_related("job", "image", "source_image").prefetch_related("job__charges")
    )
    return {
        "project": access.project,
        "access": access,
        "conversation": conversation,
        "turns": turns,
        "active": any(turn.job.is_active for turn in turns),
        "form": form or TurnForm(),
        "problem": problem,
        "model_problem": conversations.model_problem(conversation.image_model),
    }


@login_required
@require_POST
def conversation_start(request: HttpRequest, project_id: int, image_id: int) -> HttpResponse:
    access = project_access(request.user, project_id, needs=Role.EDITOR, writes=True)
    image = get_object_or_404(Image.objects.visible(), project=access.project, pk=image_id)
    try:
        conversation = conversations.conversation_start(
            project=access.project, author=request.user, image=image
        )
    except conversations.TurnRefused as refusal:
        messages.error(request, str(refusal))
        return redirect(image.get_absolute_url())
    return redirect(conversation.get_absolute_url())


@login_required
@require_GET
def conversation(request: HttpRequest, project_id: int, conversation_id: int) -> HttpResponse:
    access, thread = _thread(request, project_id, conversation_id)
    context = _context(access, thread)
    if request.htmx and request.GET.get("part") == "turns":
        return render(request, f"{PAGE}#turns", context)
    return render(request, PAGE, context)


@login_required
@require_POST
def turn_send(request: HttpRequest, project_id: int, conversation_id: int) -> HttpResponse:
    access, thread = _thread(request, project_id, conversation_id, writes=True)
    form = TurnForm(request.POST)
    problem = ""
    if form.is_valid():
        try:
            conversations.turn_send(
                conversation=thread, author=request.user, message=form.cleaned_data["message"]
            )
        except (conversations.TurnRefused, spend.BudgetExceeded, jobs.TooManyWaiting) as refusal:
            problem = str(refusal)
        else:
            return redirect(thread.get_absolute_url())
    return render(request, PAGE, _context(access, thread, form, problem), status=400)


@login_required
@require_POST
def turn_branch(request: HttpRequest, project_id: int, conversation_id: int, turn_id: int) -> HttpResponse:
    _, thread = _thread(request, project_id, conversation_id, writes=True)
    turn = get_object_or_404(Turn.objects.select_related("conversation"), conversation=thread, pk=turn_id)
    try:
        branch = conversations.conversation_branch(turn=turn, author=request.user)
    except conversations.TurnRefused as refusal:
        messages.error(request, str(refusal))
        return redirect(thread.get_absolute_url())
    return redirect(branch.get_absolute_url())


@login_required
@require_POST
def credential_check(request: HttpRequest, project_id: int) -> HttpResponse:
    """Check a photo someone has (not stored): does it carry an OpenAI content credential?"""
    # writes: an archived project refuses it like any action on it, though nothing is stored.
    access = project_access(request.user, project_id, needs=Role.EDITOR, writes=True)
    form = CredentialCheckForm(request.POST, request.FILES)
    verdict = None
    status = 400
    if form.is_valid():
        verdict = provenance.file_check(upload=form.cleaned_data["file"])
        status = 200
    items = access.project.references.in_library().select_related("uploaded_by")
    context = {"project": access.project, "access": access, "items": items, "report": None}
    context |= {"check_form": form, "verdict": verdict}
    return render(request, "workspace/references.html", context, status=status)
