"""The Train page's runs side: the selected run (live from its job, or from its files), Resume, all runs.

Not a page: app.py's st.navigation names the pages. pages/train.py holds the form for a new run
and calls `run_panel` and `runs_table` with its job manager; while a job trains, two fragments poll
`job.snapshot()` (the progress bar every second, the curves and probes every few seconds) and nothing
else, so no st.* call ever comes from a training thread.
"""
from pathlib import Path
from typing import Callable

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from pages.run_focus import KEEP, focused_run, heal_pick, set_focus, show_notice, warn_stale_link
from udd_core import runs
from udd_core import run_status
from udd_core.data import typed_path
from udd_core.display import markdown_literal, probe_pairs
from udd_core.methods import epoch_loops, fitted_in_one_pass
from udd_core.jobs import RUN_COLUMNS, JobManager, TrainJob, run_rows
from udd_core.resume import check_resume_data, resume_offer
from udd_core.progress import loop_series, loss_curve, progress_bar
from udd_core.run_notes import ending_note, history_note, next_step

PROBES_PER_ROW = 4  # the default n_probe: one row
POLL_S, DISK_POLL_S = 1.0, 2.0  # the progress bar: a live job / a run trained by another process (status.json)
CURVES_POLL_S = 5.0  # the loss curves and probe images of a run that trains
TABLE_POLL_S = 10.0  # the runs table while a run trains: it reads every run's files, and the browser redraws it
ss = st.session_state


def select(name: str | None) -> None:
    """Make run `name` the selected one here and the run in focus on every page (None: a label of no run)."""
    if name:
        ss["train_selected"] = name
        set_focus(name)


def show_status(mgr: JobManager, root: Path, name: str, polled: str, damage: str | None) -> None:
    """The selected run's state: live progress from the job's snapshot, or its status file; `damage`: why its
    files cannot be read (`RunInfo.damaged`, judged when the runs were listed; None for a running run)."""
    run_dir, job = runs.run_path(root, name), mgr.get(name)
    alive = job is not None and job.is_alive()
    disk = {} if alive else run_status.read_status(run_dir)
    if (polled == "job" and not alive) or (polled == "disk" and disk["status"] != "running"):
        st.rerun()  # the job just ended: a full rerun refreshes the runs table and stops the polling
    snap = job.snapshot() if job is not None else None
    if alive:
        done, text = progress_bar(snap, one_pass=not job.detector.trains_epochs)
        st.progress(done, text=text)
        if st.button("Stop", key="train_stop", icon=":material/stop:",
                     help="Stops after the current batch; the weights are kept and the run can be resumed."):
            job.stop()
    elif snap is not None and snap.status == "failed":
        st.error(f"Training failed: {snap.error}" + (f" (at {snap.error_where})" if snap.error_where else ""))
    elif damage:  # QA sweep 11: a green "finished" sat above the red "files are damaged"
        st.warning(f"{run_status.status_line(disk)}; its files have been damaged since (see below)")
    else:
        show = {"finished": st.success, "failed": st.error, "running": st.info}.get(disk["status"], st.warning)
        show(run_status.status_line(disk))
    for note in runs.train_notices(runs.read_train(run_dir)) + list(snap.notices if snap else ()):
        show_notice(note)


def show_record(mgr: JobManager, root: Path, name: str, damage: str | None) -> None:
    """The selected run's loss curves and probe images: from the live job, or from the run's files; `damage`
    as `show_status` takes it."""
    run_dir, job = runs.run_path(root, name), mgr.get(name)
    alive = job is not None and job.is_alive()
    snap = job.snapshot() if job is not None else None
    # The whole record, from this or an earlier app session; a live job of one epoch loop reads no file.
    loops = [("", None)] if alive and not snap.earlier else epoch_loops(run_dir)
    if drawn := loop_series(snap, loops, alive):
        log = st.toggle("Log scale", key="train_log", persist_state=KEEP)
        for i, (caption, series) in enumerate(drawn):  # Deep SVDD: pretraining, then the distance to c
            if caption:
                st.caption(caption)
            # Plain dicts, unvalidated: 10x faster to redraw than a validated go.Figure.
            st.plotly_chart(go.Figure(loss_curve(**series, log=log), _validate=False), key=f"train_curves_{i}")
    elif not alive and not fitted_in_one_pass(str(runs.read_train(run_dir).get("method") or "autoencoder")):
        st.caption("No epoch has finished: there is no loss curve to draw yet.")
    if damaged_history := history_note(run_dir):  # lines lost after they were written (QA sweep 21)
        show_notice(damaged_history)
    if not alive and damage:  # whatever its status says, nothing can load it
        st.error(f"This run's files are damaged: {damage}.")
    elif not alive and (step := next_step(run_dir)):  # finished, or stopped with a model that scores
        title, text = step
        st.info(text)
        if learning := ending_note(run_dir):
            show_notice(learning)
        if st.button(f"Open in {title}", key="train_open_next", icon=":material/arrow_forward:"):
            st.switch_page(f"pages/{title.lower()}.py")  # the run is in focus: the page opens it
    if snap is not None and snap.probe_input is not None and snap.probe_recon is not None:
        kind = runs.run_source(run_dir).get("kind", "")
        below = job.detector.probe_label  # the live job's own: no method.json read every few seconds
        st.caption(f"Probe images: input (top), {below} after the latest epoch (bottom)")
        pairs = probe_pairs(snap.probe_input, snap.probe_recon, kind)
        for start in range(0, len(pairs), PROBES_PER_ROW):  # whole rows: 4 probes never wrap as 3 + 1
            for col, pair in zip(st.columns(PROBES_PER_ROW), pairs[start:start + PROBES_PER_ROW]):
                col.image(pair, width="stretch", output_format="PNG")


def resume_box(mgr: JobManager, root: Path, run: runs.RunInfo, status: str, load_images: Callable) -> None:
    """Resume up to a new total, for a run whose method resumes and whose status allows it."""
    if not (offer := resume_offer(run, status)):
        return
    moved = not offer.data_path or not Path(offer.data_path).exists()
    new_place, place_error = None, None
    if moved:  # the data is not where train.json says: ask for its new place, which train.json then records
        was = f"{offer.data_path}, which is no longer there" if offer.data_path else "data its train.json does not name"
        st.warning(f"To resume, the run needs the images it trained on: {was}.")  # QA sweep 10: said only on Resume
        new_place = st.text_input("Data: its new place", key=f"train_resume_data_{run.name}",
                                  help="Type the folder or file's new place; the run records it, so Inspect and "
                                       "Generate find it too.")
        new_place = typed_path(new_place) or None  # as pasted: spaces and one pair of quotes (QA sweep 17)
        if new_place:
            try:  # as typed, like the Path box: a missing path, data of the other kind, another count
                check_resume_data(runs.read_train(run.path), new_place, run.name)
            except (ValueError, OSError) as e:
                place_error = str(e)
                st.error(place_error)
            else:  # QA sweep 11: nothing said the place was usable
                st.caption(f"✅ {markdown_literal(new_place)}: the run's kind of data and number of images; "
                           "Resume checks that they are the very images it trained on.")
    r = st.columns([2, 1], vertical_alignment="bottom")
    # No minimum of done + 1: Streamlit would silently keep its old value for a smaller one typed in,
    # and Resume would train to that. A total at or below the epochs done is refused on Resume instead.
    more = r[0].number_input(f"Resume up to {offer.unit}", 1, 1_000_000, key=f"train_resume_to_{run.name}",
                             value=offer.total,
                             help=f"The new total; more than the {offer.done} {offer.unit}{'s' * (offer.done != 1)} done.")
    if not r[1].button("Resume", icon=":material/resume:", key="train_resume",
                       disabled=moved and (not new_place or place_error is not None)):  # nothing to load yet
        return
    try:
        total = offer.check_total(more)
    except ValueError as e:  # a total that would train nothing
        st.error(str(e))
        return
    try:  # the run's own data, through the cache: a resume right after a stop decodes nothing
        with st.spinner(f"Resuming {run.name}: loading its images, model and optimiser state ..."):
            images = load_images(new_place or offer.data_path, offer.input_shape, offer.tile, offer.train_on)[0]
            mgr.start(TrainJob.resume(runs.run_path(root, run.name), images=images, epochs=total, data_path=new_place))
        st.rerun()
    except (ValueError, OSError) as e:  # the data moved, or the run folder is damaged
        hint = " — if the data has moved, type its new place above" if moved and not new_place else ""
        said = str(e).startswith(f"run {run.name}:")  # the resume checks name the run themselves
        st.error(f"{'' if said else f'resume {run.name}: '}{e}{hint}")


def run_panel(mgr: JobManager, root: Path, all_runs: list, load_images: Callable) -> None:
    """Which runs train now, the run picker (following the run in focus), the selected run and its Resume box.
    `all_runs` is this rerun's `runs.list_runs(root)`; `load_images(path, shape, tile, train_on)` loads a
    run's training images again for Resume."""
    status = mgr.statuses(all_runs)
    if active := mgr.active():  # names only: progress shown here would go stale between full reruns
        st.info("Training now: " + ", ".join(f"**{j.name}**" for j in active))
    if (focus := focused_run()) in status:
        ss["train_selected"] = focus
    else:
        warn_stale_link(list(status), root)
    ss.setdefault("train_selected", None)
    sel = ss["train_selected"] if ss["train_selected"] in status else next(iter(status), None)
    st.subheader("Run")
    if sel is None:
        st.info(f"No runs yet in the runs folder ({root.resolve()}): start one on the left.")
        return
    ss["train_run_pick"] = sel
    st.selectbox("Run", list(status), key="train_run_pick", format_func=lambda n: f"{n} ({status[n]})",
                 on_change=lambda: select(heal_pick("train_run_pick", list(status))), label_visibility="collapsed")
    set_focus(sel)  # followed by the other pages
    polled = "job" if (j := mgr.get(sel)) and j.is_alive() else "disk" if status[sel] == "running" else ""
    # Two fragments: the bar is cheap to redraw every second; the charts and images cost the browser far more
    # (QA: redrawn every second, they slowed a small training 2.5-4x on the same two cores).
    info = next(r for r in all_runs if r.name == sel)
    damage = None if polled else info.damaged  # a run that trains is judged once it has stopped
    st.fragment(run_every={"job": POLL_S, "disk": DISK_POLL_S}.get(polled))(show_status)(mgr, root, sel, polled,
                                                                                     damage)
    st.fragment(run_every={"job": CURVES_POLL_S, "disk": CURVES_POLL_S}.get(polled))(show_record)(mgr, root, sel,
                                                                                             damage)
    # Its own status, not "damaged": a damaged model.safetensors is what Resume writes again.
    resume_box(mgr, root, info, "running" if status[sel] == "running" else info.status, load_images)


def runs_table(mgr: JobManager, root: Path, all_runs: list) -> None:
    """Every run under `root`: method, status, epochs, best loss, creation time and last message; re-read from
    disk every few seconds while a run trains, here or in another process (`udd train`), so its epochs and
    best loss stay current. `all_runs` (this rerun's listing) only decides whether the table polls."""
    st.fragment(run_every=TABLE_POLL_S if table_polls(mgr, all_runs) else None)(_runs_table)(mgr, root)


def table_polls(mgr: JobManager, listed: list) -> bool:
    """Whether the runs table must follow the disk: a job of this process trains, or a listed run's
    status.json says "running" (a live `udd train` elsewhere; a dead one reads as interrupted)."""
    return bool(mgr.active()) or any(r.status == "running" for r in listed)


def _runs_table(mgr: JobManager, root: Path) -> None:
    listed = runs.list_runs(root)
    rows = run_rows(listed, mgr.statuses(listed))
    table = pd.DataFrame(rows, columns=list(RUN_COLUMNS)).astype({"epochs": "Int64", "best loss": "Float64"})
    col = st.column_config
    st.dataframe(table, hide_index=True, placeholder="—", column_config={  # not "None" where a run has no value
        "epochs": col.NumberColumn(width="small", help="Epochs trained; — for a method fitted in one pass "
                                                       "(no training epochs). Deep SVDD: its autoencoder "
                                                       "pretraining epochs; the message gives its own too."),
        "best loss": col.NumberColumn(width=110, format="%.4g", help="The lowest validation loss; the training "
                                      "loss for a run without a validation split"),  # QA: headed "val" for both
        "created": col.DatetimeColumn(width=110, format="D MMM HH:mm"), "message": col.TextColumn()})
