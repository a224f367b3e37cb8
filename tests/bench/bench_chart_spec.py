"""to_dict with and without altair schema validation on a 5-model ROC chart (issue 13; not
collected by pytest): python tests/bench/bench_chart_spec.py"""
import time

import altair as alt
import numpy as np
import pandas as pd

from sscmort_core.views import eval_charts as ce
from sscmort_core.views.study import reported_aucs

rows=[]
for i in range(5):
    f=np.linspace(0,1,80); rows.append(pd.DataFrame({"model_id":f"m{i}","model":f"M{i}: AUC 0.7","fpr":f,"tpr":np.sqrt(f),"threshold":1-f}))
roc=pd.concat(rows)
c=ce.roc_chart(roc,3,reported_aucs(3))
for v in (True,False):
    t=time.perf_counter()
    for _ in range(10):
        with alt.data_transformers.disable_max_rows(): d=c.to_dict(validate=v)
    print(v,(time.perf_counter()-t)/10)
with alt.data_transformers.disable_max_rows():
    print(c.to_dict()==c.to_dict(validate=False))
