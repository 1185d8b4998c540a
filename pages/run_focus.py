"""What every page shares: the deep-link hand-over to app.py, the run in focus, and how a notice shows.

Not a page: app.py's st.navigation names the pages, and Streamlit lists only those. The run in
focus is `udd_run` in the session and `?run=` in the URL: the run picked on any page is the one
the next page opens, and a refresh or a shared link opens it again.
"""
from collections.abc import Sequence
from pathlib import Path

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

FOCUS = "udd_run"  # session key of the run in focus, read by every page
KEEP = "session"  # a widget's `persist_state`: its value survives a visit to another page


def hand_over_deep_link(page: str) -> None:
    """Call first on every page (``page`` = "pages/x.py").

    Until some session has run app.py, Streamlit treats pages/ as a legacy multipage folder and runs
    a deep-linked page (/train?run=...) on its own: no menu, no wide layout. The page records itself
    and switches to app.py, whose st.navigation ends that mode and comes back here (see app.py).
    """
    if getattr(PagesManager, "uses_pages_directory", False):
        st.session_state["udd_deep_link"] = (page, st.query_params.to_dict())
        st.switch_page("app.py")


def focused_run() -> str | None:
    """The run in focus: the URL's after a refresh, else the one last picked on any page."""
    return st.query_params.get("run") or st.session_state.get(FOCUS)


def set_focus(name: str) -> None:
    """Make ``name`` the run in focus, for the other pages and in the URL (only writes what changed)."""
    st.session_state[FOCUS] = name
    if st.query_params.get("run") != name:
        st.query_params["run"] = name


def heal_pick(key: str, names: Sequence[str]):
    """Put run names back into the run picker ``st.session_state[key]`` (a selectbox's value or a multiselect's).

    The pickers label each run with its status. When a status changes between two reruns (a run finishes),
    a browser that has not drawn the new labels yet sends the old one, and Streamlit hands that label back
    as the value: not a run, and `?run=` would name it. Call first in the picker's on_change. A label is
    the run's name and a space, then its status; names hold no spaces (`runs.validate_run_name`).
    Returns the healed value: a run name (None when the label names no run) or a list of them.
    """
    ss = st.session_state

    def name_of(v):
        if v in names or not isinstance(v, str):
            return v
        return max((n for n in names if v.startswith(n + " ")), key=len, default=None)

    value = ss.get(key)
    if isinstance(value, list):
        ss[key] = [n for n in map(name_of, value) if n is not None]
    elif value is not None:
        ss[key] = name_of(value)
    return ss.get(key)


def warn_stale_link(names: Sequence[str], root: Path, instead: str = "") -> None:
    """A warning when the URL names a run that is not among ``names``: a stale or mistyped link, or a run that has
    no saved model or whose files are damaged (then why, QA sweep 21: a deleted bank.safetensors read as "no run
    named"); ``instead``: what the page shows in its place."""
    from udd_core.run_notes import damaged_note
    from udd_core.runs import validate_name_quietly

    if (asked := st.query_params.get("run")) and asked not in names:
        then = f"; {instead}" if instead else ""
        folder = Path(root) / asked
        damage = damaged_note(folder) if validate_name_quietly(asked) and folder.is_dir() else None
        st.warning(f"Run {asked!r} cannot be opened: {damage}{then}." if damage else
                   f"No run named {asked!r} in {root}{', or it has no saved model yet' if instead else ''}{then}.")


def follow_focus(key: str, names: Sequence[str], root: Path, warn: bool = True) -> bool:
    """Point the page's run picker ``st.session_state[key]`` at the run in focus, keep the focus on it.

    The picker keeps its run while that stays valid and no other run was put in focus; else it takes
    the focus, or the first of ``names`` (non-empty). True when the picker changed (the page resets
    what depends on the run). ``warn`` False: the page has already said why the run in focus is not
    listed (Generate, for a run that cannot generate), and the focus stays on that run for the other pages.
    """
    ss, focus = st.session_state, focused_run()
    if warn:
        warn_stale_link(names, root, "showing another run")
    changed = ss.get(key) not in names or (focus in names and focus != ss[key])
    if changed:
        ss[key] = focus if focus in names else names[0]
    if warn or focus in names or focus is None:
        set_focus(ss[key])  # a refresh or a shared link opens it again
    return changed


def run_label(info) -> str:
    """A run picker's "status, N epochs" (a runs.RunInfo); a method fitted in one pass (the memory bank)
    has no epochs to count, and a method other than the autoencoder is named."""
    from udd_core.methods import detector_class, run_method

    if info.damaged:  # whatever its status says, nothing can load it: the page that opens it says why
        return "damaged"
    epochs = f"{info.status}, {info.epochs_done} epoch{'s' * (info.epochs_done != 1)}"
    try:
        method = run_method(info.path)
        one_pass = not detector_class(method).trains_epochs
    except ValueError:  # an unreadable or unknown method file: the page that opens it says why
        return epochs
    if one_pass:
        return f"{info.status}, {method} (one pass)"
    # a later loop's epochs too: "stopped, 3 epochs" said nothing of 7 Deep SVDD epochs after them (QA sweep 19b)
    later = "".join(f" + {done} {phase} epoch{'s' * (done != 1)}"
                    for phase, done in detector_class(method).later_epochs(info.path) if done)
    return epochs + later + ("" if method == "autoencoder" else f", {method}")


def warn_unfinished(run_dir: Path) -> str | None:
    """Warn when the run in view has not finished training (`run_notes.unfinished_note`, the line `udd score`
    prints first among its notices) and return that line; None for a finished run."""
    from udd_core.notices import as_sentence
    from udd_core.run_notes import unfinished_note

    note = unfinished_note(run_dir)
    if note:
        st.warning(as_sentence(note))
    return note


def show_notice(note: str) -> None:
    """A loader or scoring notice: a caution (`notices.Caution`: it changes how the numbers read) as a warning,
    a routine one as an ℹ️ caption (QA sweep 11: seven identical boxes hid the three that mattered)."""
    from udd_core.notices import as_sentence, is_caution

    if is_caution(note):
        st.warning(as_sentence(note))
    else:
        st.caption(f"ℹ️ {as_sentence(note)}")
