"""What the pages show: page data built from the store (cohort, comparison, radiomics,
models), readable names (:mod:`.names`) and the altair charts. Pure of Streamlit.

May import: everything below it (pipeline included); never cli.
"""
