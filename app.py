"""udd: the Streamlit workbench. Start with `./run-app` (or `streamlit run app.py`)."""
import streamlit as st

st.set_page_config(page_title="udd — defect detection workbench", page_icon="🔍", layout="wide")

nav = st.navigation(
    [
        st.Page("pages/design.py", title="Design", icon="🧱", default=True),
        st.Page("pages/train.py", title="Train", icon="🏋️"),
        st.Page("pages/inspect.py", title="Inspect", icon="🔎"),
        st.Page("pages/generate.py", title="Generate", icon="✨"),
    ]
)
nav.run()
