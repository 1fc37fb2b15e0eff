{#- Rows for which a boolean SQL expression over the model's columns is false.
    A null result passes, as in a CHECK constraint. -#}
{% test expression_is_true(model, expression) %}
select *
from {{ model }}
where not ({{ expression }})
{% endtest %}
