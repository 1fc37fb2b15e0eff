{#- Rows whose value falls outside [min_value, max_value] (bounds optional,
    exclusive when inclusive=false). Nulls are left to not_null. -#}
{% test accepted_range(model, column_name, min_value=none, max_value=none, inclusive=true) %}
{%- if min_value is none and max_value is none -%}
    {{ exceptions.raise_compiler_error("accepted_range on " ~ column_name ~ " needs min_value or max_value") }}
{%- endif -%}
{%- set op = '=' if inclusive else '' -%}
select {{ column_name }} as out_of_range_value
from {{ model }}
where {{ column_name }} is not null
  and not (
    {%- if min_value is not none %} {{ column_name }} >{{ op }} {{ min_value }}{% endif %}
    {%- if min_value is not none and max_value is not none %} and{% endif %}
    {%- if max_value is not none %} {{ column_name }} <{{ op }} {{ max_value }}{% endif %}
  )
{% endtest %}
