"""udd: the Streamlit workbench. Start with `./run-app` (or `streamlit run app.py`)."""
import streamlit as st

st.set_page_config(page_title="udd — defect detection workbench", page_icon="🔍", layout="wide")

# Until some session has run this file, Streamlit treats pages/ as a legacy multipage folder and
# runs a deep-linked page (/train?run=...) on its own: no menu, no wide layout. Each page then
# records itself and switches here; st.navigation ends that mode, and we go back to the page.
nav = st.navigation(
    [
        st.Page("pages/design.py", title="Design", icon="🧱", default=True),
        st.Page("pages/train.py", title="Train", icon="🏋️"),
        st.Page("pages/inspect.py", title="Inspect", icon="🔎"),
        st.Page("pages/generate.py", title="Generate", icon="✨"),
    ]
)
if deep_link := st.session_state.pop("udd_deep_link", None):
    page, query = deep_link
    st.switch_page(page, query_params=query)
nav.run()
