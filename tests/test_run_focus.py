"""pages/run_focus.py, the helper every page imports: the run in focus follows the URL and the other pages."""
from streamlit.testing.v1 import AppTest


def picker_page():
    """A page with a run picker, as Inspect and Generate use the helper."""
    import streamlit as st

    from pages.run_focus import follow_focus, set_focus

    names = ["a", "b", "c"]
    changed = follow_focus("pick", names, "RUNS")
    st.session_state["changes"] = st.session_state.get("changes", 0) + changed
    st.selectbox("Run", names, key="pick", on_change=lambda: set_focus(st.session_state["pick"]))


def run(query=None, focus=None) -> AppTest:
    app = AppTest.from_function(picker_page)
    if query:
        app.query_params["run"] = query
    if focus:
        app.session_state["udd_run"] = focus
    return app.run()


def test_first_run_without_focus_takes_the_first_and_puts_it_in_focus():
    app = run()
    assert not app.exception and not app.warning
    assert app.selectbox(key="pick").value == "a"
    assert app.session_state["udd_run"] == "a" and app.query_params["run"] == "a"
    assert app.session_state["changes"] == 1


def test_the_url_wins_over_the_session_focus():
    app = run(query="c", focus="b")
    assert app.selectbox(key="pick").value == "c" and app.session_state["udd_run"] == "c"


def test_the_focus_picked_on_another_page():
    app = run(focus="b")
    assert app.selectbox(key="pick").value == "b" and app.query_params["run"] == "b"


def test_a_stale_link_warns_and_shows_another_run():
    app = run(query="gone")
    assert app.selectbox(key="pick").value == "a" and app.query_params["run"] == "a"
    assert "No run named 'gone' in RUNS" in app.warning[0].value


def test_a_pick_becomes_the_focus_and_stays():
    app = run()
    app.selectbox(key="pick").set_value("c").run()
    assert app.session_state["udd_run"] == "c" and app.query_params["run"] == "c"
    before = app.session_state["changes"]
    app.run()  # a rerun keeps it, and reports no change
    assert app.selectbox(key="pick").value == "c" and app.session_state["changes"] == before
    app.session_state["udd_run"] = "b"  # another page put b in focus
    app.query_params["run"] = "b"
    app.run()
    assert app.selectbox(key="pick").value == "b" and app.session_state["changes"] == before + 1


def test_the_deep_link_hand_over_is_a_no_op_under_navigation():
    def page():
        import streamlit as st

        from pages.run_focus import hand_over_deep_link

        hand_over_deep_link("pages/x.py")
        st.write("still here")

    app = AppTest.from_function(page).run()
    assert not app.exception and app.markdown[0].value == "still here" and "udd_deep_link" not in app.session_state
