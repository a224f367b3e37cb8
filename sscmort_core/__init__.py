"""sscmort core: mortality risk from chest CT in SSc-ILD. Pure library, no Streamlit.

Research use only: not for clinical decisions.
"""

__version__ = "0.1.0"
