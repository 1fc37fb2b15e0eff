{#- Simulation years (var simulation_start_year..simulation_end_year) that have
    no COLA rate. -#}
select y.year
from range({{ var('simulation_start_year') }}, {{ var('simulation_end_year') }} + 1) as y(year)
left join {{ ref('stg_config_cola_by_year') }} as c on c.year = y.year
where c.year is null
