{{ config(tags=['foundation']) }}

{#- Levers for the fiscal years the simulation covers. -#}
select
    scenario_id,
    fiscal_year,
    job_level,
    upper(event_type) as event_type,
    parameter_name,
    parameter_value,
    is_locked
from {{ ref('comp_levers') }}
where fiscal_year between {{ var('simulation_start_year') }} and {{ var('simulation_end_year') }}
