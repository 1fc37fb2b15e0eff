{#- One row when the model's row count is outside [min_rows, max_rows]. -#}
{% test row_count_between(model, min_rows=1, max_rows=none) %}
select count(*) as row_count
from {{ model }}
having count(*) < {{ min_rows }}
{%- if max_rows is not none %} or count(*) > {{ max_rows }}{% endif %}
{% endtest %}
