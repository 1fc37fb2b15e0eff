{#- Targets for the fiscal years the simulation covers. -#}
select
    scenario_id,
    fiscal_year,
    metric_name,
    target_value,
    tolerance_pct,
    lower(priority) as priority,
    description
from {{ ref('comp_targets') }}
where fiscal_year between {{ var('simulation_start_year') }} and {{ var('simulation_end_year') }}
