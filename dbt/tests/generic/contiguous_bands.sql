{#- Bands [lower, upper) ordered by lower bound must be non-empty and touch:
    each band's upper bound is the next band's lower bound (no gap, no
    overlap). With cover_from / cover_to, the first band must start at or
    below cover_from and the last band must contain cover_to. One row per
    problem found. -#}
{% test contiguous_bands(model, lower_column, upper_column, cover_from=none, cover_to=none) %}
with bands as (
    select
        {{ lower_column }} as lower_bound,
        {{ upper_column }} as upper_bound,
        lead({{ lower_column }}) over (order by {{ lower_column }}) as next_lower_bound,
        row_number() over (order by {{ lower_column }}) as band_order,
        count(*) over () as band_count
    from {{ model }}
)
select 'empty or inverted band' as problem, lower_bound, upper_bound
from bands
where upper_bound <= lower_bound
union all
select 'gap or overlap with the next band', lower_bound, upper_bound
from bands
where next_lower_bound is not null and next_lower_bound <> upper_bound
{%- if cover_from is not none %}
union all
select 'first band starts above {{ cover_from }}', lower_bound, upper_bound
from bands
where band_order = 1 and lower_bound > {{ cover_from }}
{%- endif %}
{%- if cover_to is not none %}
union all
select 'last band ends at or below {{ cover_to }}', lower_bound, upper_bound
from bands
where band_order = band_count and upper_bound <= {{ cover_to }}
{%- endif %}
{% endtest %}
