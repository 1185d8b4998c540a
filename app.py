"""udd: the Streamlit workbench. Start with `./run-app` (or `streamlit run app.py`)."""
import streamlit as st

st.set_page_config(page_title="udd — defect detection workbench", page_icon=":material/troubleshoot:", layout="wide")

# Icons: Streamlit's built-in Material Symbols, which render without an emoji font (Debian's chromium).
# pages/run_focus.py sits beside the pages but is not one: Streamlit lists only the pages named here.
# Until some session has run this file, Streamlit treats pages/ as a legacy multipage folder and
# runs a deep-linked page (/train?run=...) on its own: no menu, no wide layout. Each page then
# records itself and switches here (pages/run_focus.py); st.navigation ends that mode, and we go
# back to the page.
# The default page is served at / but still reserves a pathname (its file name, "design"): it takes
# "home" so that the hidden alias below can answer a typed or bookmarked /design.
design = st.Page("pages/design.py", title="Design", icon=":material/architecture:", default=True, url_path="home")


def design_alias() -> None:
    """/design: the Design page lives at the root URL, so a typed or bookmarked /design goes there."""
    st.switch_page(design)


nav = st.navigation(
    [
        design,
        st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
        st.Page("pages/inspect.py", title="Inspect", icon=":material/troubleshoot:"),
        st.Page("pages/generate.py", title="Generate", icon=":material/auto_awesome:"),
        st.Page("pages/compare.py", title="Compare", icon=":material/compare:"),
        st.Page(design_alias, title="Design", url_path="design", visibility="hidden"),
    ]
)
if deep_link := st.session_state.pop("udd_deep_link", None):
    page, query = deep_link
    st.switch_page(page, query_params=query)
nav.run()
