-- silver.planes: one row per tail number.
with source as (
    select * from bronze_batch
),

final as (
    select
        upper(trim(tailnum)) as tailnum,
        year as manufactured_year,
        type as plane_type,
        manufacturer,
        model,
        engines,
        seats,
        speed as speed_mph,
        engine as engine_type,
        _source_file,
        _ingested_at,
        _batch_id
    from source
)

select * from final
