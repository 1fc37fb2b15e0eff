{#- One row when the column's total differs from expected by more than
    tolerance (an empty model sums to 0). -#}
{% test column_sum_equals(model, column_name, expected, tolerance=0) %}
select coalesce(sum({{ column_name }}), 0) as actual_sum
from {{ model }}
having abs(coalesce(sum({{ column_name }}), 0) - {{ expected }}) > {{ tolerance }}
{% endtest %}
